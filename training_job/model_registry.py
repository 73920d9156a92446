"""The model registry: artefacts in MinIO, one row per version in PostgreSQL, promotions as events."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from infra.clients import db_sessions, minio_client
from infra.db.models import ModelVersion
from infra.db.registry import RegistryError
from infra.images import ImageLimits
from infra.object_store import upload_folder
from infra.runtime_names import KERAS, LITERT
from infra.settings import Settings
from schemas.model_artefact import (
    KERAS_FILE,
    ArtefactInfo,
    artefact_digest,
    file_sha256,
    write_artefact_info,
)
from schemas.ood_scores import SEED_TAU_ENERGY, SEED_TAU_SOFTMAX, Thresholds
from training_job.runtime_check import CheckImages, check_runtime, photo_check_images
from training_job.serving_export import ExportReport, export_litert

log = logging.getLogger(__name__)
SOURCE = "training_job"
ENERGY_PERCENTILES = 101


@dataclass(frozen=True)
class ImportedModel:
    version: str
    artefact_uri: str
    artefact_digest: str
    export: ExportReport
    already_registered: bool
    serving_runtime: str  # what the workers serve it on unless WASTEX_SERVING_RUNTIME says otherwise


def read_class_file(path: Path) -> list[str]:
    classes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(set(map(str.casefold, classes))) != len(classes):
        raise RegistryError(f"{path}: class names repeat (compared without case)")
    return classes


def import_model(settings: Settings, keras_file: Path, classes: list[str], *, version: str | None = None,
                 tau_energy: float | None = None, tau_softmax: float | None = None,
                 energy_quantiles: list[float] | None = None, review_rate: float | None = None,
                 drifting_camera: Thresholds | None = None,
                 check_images: CheckImages | None = None) -> ImportedModel:
    """Register a user's `.keras` model: LiteRT export checked against Keras, the serving runtime chosen by
    measurement (training_job.runtime_check) on `check_images` (default: the non-waste photo sample), artefacts
    to MinIO, a row with the artefact's content digest, runtime and runtime figures.

    A trained candidate also brings the percentiles 0..100 of its val split's energies under this model (written to the
    artefact's thresholds and the row: the reference of drift checks), the review rate measured on its test
    split and the stricter pair of thresholds for drifting cameras; a user's import has none of them (its row leaves
    them null, and its regular pair serves drifting cameras too).

    Importing the same content under the same name again is a no-op that measures nothing and keeps the row, its
    runtime and figures included, as it is (the default version name is derived from the file's content); the
    same name with other content raises RegistryError, and nothing is uploaded.
    """
    import keras

    version = version or f"imported-{file_sha256(keras_file)[:12]}"
    outputs = int(keras.models.load_model(keras_file, compile=False).output_shape[-1])
    if outputs != len(classes):
        raise RegistryError(f"the model has {outputs} outputs but {len(classes)} classes were given")
    if tau_energy is None or tau_softmax is None:
        log.warning("no OOD thresholds given for %s: using the seeds' fallback (%s, %s)", version,
                    SEED_TAU_ENERGY, SEED_TAU_SOFTMAX)
    if energy_quantiles is not None and len(energy_quantiles) != ENERGY_PERCENTILES:
        raise RegistryError(f"expected {ENERGY_PERCENTILES} energy percentiles (0..100), got {len(energy_quantiles)}")
    info = ArtefactInfo(classes, SEED_TAU_ENERGY if tau_energy is None else tau_energy,
                        SEED_TAU_SOFTMAX if tau_softmax is None else tau_softmax, energy_quantiles, drifting_camera)

    Session = db_sessions(settings)
    with tempfile.TemporaryDirectory(prefix="wastex-model-") as staging:
        folder = Path(staging)
        shutil.copy2(keras_file, folder / KERAS_FILE)
        write_artefact_info(folder, info)
        report = export_litert(folder)
        digest = artefact_digest(folder)
        with Session() as session:
            existing = session.scalars(select(ModelVersion).where(ModelVersion.version == version)).one_or_none()
        if existing is not None:
            # Checked before the upload: the registered artefact's objects must never be overwritten.
            _same_content_or_refuse(existing, digest)
            return ImportedModel(version, existing.artefact_uri, digest,
                                 ExportReport(existing.has_serving_export, 0.0, True, "the same content as registered"),
                                 already_registered=True, serving_runtime=serving_runtime(existing))
        choice, runtime_check = check_runtime(folder, check_images or photo_check_images(), ImageLimits.of(settings))
        upload_folder(minio_client(settings), settings.bucket_models, version, folder)

    artefact_uri = f"s3://{settings.bucket_models}/{version}"
    with Session.begin() as session:
        session.add(ModelVersion(version=version, artefact_uri=artefact_uri, classes=classes,
                                 tau_energy=info.tau_energy, tau_softmax=info.tau_softmax,
                                 energy_quantiles=info.energy_quantiles, review_rate=review_rate,
                                 metrics={}, status="candidate", has_serving_export=report.exported,
                                 artefact_digest=digest, serving_runtime=choice.chosen, runtime_check=runtime_check))
    log.info("registered model %s (digest %s, serving on %s) at %s", version, digest, choice.chosen, artefact_uri)
    return ImportedModel(version, artefact_uri, digest, report, already_registered=False,
                         serving_runtime=choice.chosen)


def _same_content_or_refuse(existing: ModelVersion, digest: str) -> None:
    if existing.artefact_digest is None:
        raise RegistryError(f"model version {existing.version!r} was registered without a content digest, so "
                            f"its content cannot be compared: register this model under a new name")
    if existing.artefact_digest != digest:
        raise RegistryError(f"model version {existing.version!r} is already registered with other content "
                            f"(digest {existing.artefact_digest[:12]}, this model {digest[:12]}): "
                            f"register it under a new name")


def serving_runtime(row: ModelVersion) -> str:
    """The runtime a version serves on: the registered choice, or for a version registered before runtimes were
    chosen, the workers' default (LiteRT when exported, else Keras)."""
    return row.serving_runtime or (LITERT if row.has_serving_export else KERAS)


def list_models(settings: Settings) -> list[ModelVersion]:
    with db_sessions(settings)() as session:
        return list(session.scalars(select(ModelVersion).order_by(ModelVersion.created_at)))


def record_metrics(settings: Settings, version: str, metrics: dict[str, float]) -> None:
    """Keep a version's evaluation figures with it (ModelPromoted carries them)."""
    with db_sessions(settings).begin() as session:
        target = session.scalars(select(ModelVersion).where(ModelVersion.version == version)).one_or_none()
        if target is None:
            raise RegistryError(f"no model version {version!r} in the registry")
        target.metrics = dict(metrics)
