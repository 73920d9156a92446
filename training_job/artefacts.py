"""The files of a model directory besides the model and its thresholds (``schemas.model_artefact``)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any
from unittest import mock

import keras

from schemas.model_artefact import CLASSES_FILE

CONFIG_FILE = "config.json"
TRAINING_LOG_CSV = "training_log.csv"
TRAINING_LOG_JSON = "training_log.json"
MODEL_SUMMARY_FILE = "model_summary.txt"
SUMMARY_WIDTH = 120


def read_classes(folder: Path) -> list[str]:
    """The class names of a model directory, in logit order (thresholds need not be there)."""
    return [line.strip() for line in (folder / CLASSES_FILE).read_text().splitlines() if line.strip()]


def write_json(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")


def write_training_log(folder: Path, records: list[dict[str, Any]]) -> None:
    """One row per epoch of every phase, as CSV and as a JSON list; columns are the union of all metrics."""
    write_json(folder / TRAINING_LOG_JSON, records)
    columns = list(dict.fromkeys(key for record in records for key in record))
    with (folder / TRAINING_LOG_CSV).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)


def write_model_summary(folder: Path, model: keras.Model) -> None:
    lines: list[str] = []
    # Keras draws the table with rich, which crops it to $COLUMNS (80 without a terminal).
    with mock.patch.dict(os.environ, {"COLUMNS": str(SUMMARY_WIDTH + 4)}):
        model.summary(line_length=SUMMARY_WIDTH, print_fn=lambda line, *_, **__: lines.append(line))
    (folder / MODEL_SUMMARY_FILE).write_text("\n".join(lines) + "\n")
