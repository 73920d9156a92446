"""The model artefact: what training_job writes and the scoring workers read (a folder, or a MinIO prefix).

The model takes float32 RGB pixels in [0, 255] at its square input size, the full frame resized
bilinearly (no crop); any normalisation is a layer inside the model, so every runtime feeds the same input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

KERAS_FILE = "model.keras"  # the source of truth
SERVING_FILE = "model.tflite"  # LiteRT export made at import or promotion; optional
CLASSES_FILE = "classes.txt"  # one class name per line, in logit order
THRESHOLDS_FILE = "thresholds.json"  # {"tau_energy": float, "tau_softmax": float}
METRICS_FILE = "metrics.json"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"  # drawn from the metrics of the evaluated split

# The seeds' hard-coded OOD thresholds: only for a model that brings none of its own.
SEED_TAU_ENERGY = -4.338604
SEED_TAU_SOFTMAX = 0.70


@dataclass(frozen=True)
class ArtefactInfo:
    classes: list[str]
    tau_energy: float
    tau_softmax: float


def read_artefact_info(folder: Path) -> ArtefactInfo:
    classes = [line.strip() for line in (folder / CLASSES_FILE).read_text().splitlines() if line.strip()]
    thresholds = json.loads((folder / THRESHOLDS_FILE).read_text())
    return ArtefactInfo(classes, float(thresholds["tau_energy"]), float(thresholds["tau_softmax"]))


def write_artefact_info(folder: Path, info: ArtefactInfo) -> None:
    (folder / CLASSES_FILE).write_text("".join(f"{name}\n" for name in info.classes))
    (folder / THRESHOLDS_FILE).write_text(
        json.dumps({"tau_energy": info.tau_energy, "tau_softmax": info.tau_softmax}, indent=2) + "\n")
