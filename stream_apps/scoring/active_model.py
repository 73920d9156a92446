"""The model a worker serves: the registry's production row, its artefact downloaded and loaded."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from infra.clients import minio_client
from infra.db.registry import production_model
from infra.object_store import download_prefix, parse_s3_uri
from infra.settings import Settings
from schemas.model_artefact import KERAS_FILE, read_artefact_info
from schemas.ood_scores import Thresholds
from stream_apps.scoring.runtime import KerasModel, LiteRTModel, load_serving_model


@dataclass(frozen=True)
class ActiveModel:
    version: str
    classes: list[str]
    thresholds: Thresholds
    runtime: LiteRTModel | KerasModel

    @property
    def input_size(self) -> int:
        return self.runtime.input_size


def load_model_folder(version: str, folder: Path, threads: int | None = None) -> ActiveModel:
    info = read_artefact_info(folder)
    return ActiveModel(version, info.classes, Thresholds(info.tau_energy, info.tau_softmax),
                       load_serving_model(folder, threads))


def fetch_artefact(settings: Settings, version: str, artefact_uri: str) -> Path:
    """Download an artefact once into the state directory; artefacts never change after upload.

    Workers sharing the state directory may download at the same time: each fills a folder of its own and
    renames it into place, so a reader never sees a half-downloaded artefact.
    """
    folder = settings.state_dir / "models" / version
    if (folder / KERAS_FILE).exists():
        return folder
    bucket, prefix = parse_s3_uri(artefact_uri)
    partial = folder.with_name(f".{version}.{uuid.uuid4().hex}.partial")
    download_prefix(minio_client(settings), bucket, prefix, partial)
    try:
        partial.rename(folder)
    except OSError:  # another worker's complete copy is in place already
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def load_production_model(settings: Settings, threads: int | None = None) -> ActiveModel | None:
    row = production_model(settings)
    if row is None:
        return None
    return load_model_folder(row.version, fetch_artefact(settings, row.version, row.artefact_uri), threads)
