"""The model a worker serves: the registry's production row, its artefact downloaded, verified and loaded.

What serves is what is registered: the local cache is keyed by the artefact's content digest (version names
repeat across deployments and database resets), and a copy whose content does not match the registry's digest
is never loaded. Artefacts are read only from the models bucket: a registry row naming any other place (another
bucket, a local path, a URL) is refused, whatever its digest. It serves on the runtime the registry chose for it
(measured at registration), unless `WASTEX_SERVING_RUNTIME` names one; a runtime that cannot run here falls back
openvino -> litert -> keras, and `/health/` reports the one that serves.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from infra.clients import minio_client
from infra.db.registry import production_model
from infra.object_store import download_prefix, parse_s3_uri
from infra.serving_runtimes import ServingModel, load_serving_model
from infra.settings import Settings
from schemas.model_artefact import artefact_digest, read_artefact_info
from schemas.ood_scores import Thresholds

log = logging.getLogger(__name__)


class UnservableModel(RuntimeError):
    """The registry names a model this worker must not serve as it is (no digest, or bytes that differ)."""


@dataclass(frozen=True)
class RegisteredModel:
    """What the registry says serves: the version, its artefact folder, the digest its bytes must have and the
    runtime to serve it on."""

    version: str
    artefact_uri: str  # the folder, s3://<bucket>/<prefix>
    digest: str | None  # None for a row registered before digests were recorded
    runtime: str | None = None  # None for a row registered before runtimes were chosen: the default chain
    runtime_check: dict | None = None  # the measurement behind the choice (infra.runtime_choice), as registered


@dataclass(frozen=True)
class ActiveModel:
    version: str
    digest: str
    classes: list[str]
    thresholds: Thresholds
    runtime: ServingModel
    served_because: str = "loaded from a folder"  # why this runtime serves: the registry's choice, a setting, ...
    runtime_check: dict | None = None
    drifting_camera: Thresholds | None = None  # the stricter pair for drifting cameras; None: `thresholds` serves

    @property
    def drifting_camera_thresholds(self) -> Thresholds:
        return self.drifting_camera or self.thresholds

    def runtime_report(self) -> dict:
        """What `/health/` says of the runtime: the one serving, why, and every candidate's figures."""
        candidates = (self.runtime_check or {}).get("candidates", [])
        return {"runtime": self.runtime.runtime, "runtime_because": self.served_because,
                "runtime_candidates": {c["runtime"]: {"images_per_second": round(c["images_per_second"], 1),
                                                      "accepted": c["accepted"], "reason": c["reason"]}
                                       for c in candidates}}

    @property
    def input_size(self) -> int:
        return self.runtime.input_size


def registered_production(settings: Settings) -> RegisteredModel | None:
    """The registry's production row, if any."""
    row = production_model(settings)
    return None if row is None else RegisteredModel(row.version, row.artefact_uri, row.artefact_digest,
                                                    row.serving_runtime, row.runtime_check)


def load_model_folder(version: str, folder: Path, threads: int | None = None, runtime: str | None = None
                      ) -> ActiveModel:
    """The artefact in `folder` on `runtime` (None: LiteRT when exported, else Keras), falling back when it cannot
    run here."""
    info = read_artefact_info(folder)
    return ActiveModel(version, artefact_digest(folder), info.classes, info.thresholds,
                       load_serving_model(folder, threads, runtime),
                       drifting_camera=info.drifting_camera_thresholds)


def _digest_or_none(folder: Path) -> str | None:
    try:
        return artefact_digest(folder)
    except FileNotFoundError:
        return None


def _discard(folder: Path) -> None:
    """Move a folder aside before removing it, so a worker sharing the state directory never reads half of it."""
    aside = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.discarded")
    try:
        folder.rename(aside)
    except OSError:
        return  # gone already
    shutil.rmtree(aside, ignore_errors=True)


def artefact_location(settings: Settings, registered: RegisteredModel) -> tuple[str, str]:
    """(bucket, prefix) of a registered artefact folder; raises UnservableModel unless it is in the models bucket."""
    try:
        bucket, prefix = parse_s3_uri(registered.artefact_uri)
    except ValueError:
        bucket, prefix = "", ""
    if bucket != settings.bucket_models or not prefix.strip("/"):
        raise UnservableModel(f"model {registered.version} is registered at {registered.artefact_uri!r}, not in the "
                              f"models bucket s3://{settings.bucket_models}/: refusing to serve it (models are served "
                              f"only from there; register it with `wastex model import`)")
    return bucket, prefix


def fetch_artefact(settings: Settings, registered: RegisteredModel) -> Path:
    """The verified artefact folder `<state_dir>/models/<digest>/`, downloaded unless a valid copy is there.

    Workers sharing the state directory may download at the same time: each fills a folder of its own and
    renames it into place, so a reader never sees a half-downloaded artefact. Raises UnservableModel for a row
    without a digest or outside the models bucket, and for downloaded bytes whose digest differs (the bad copy is
    removed).
    """
    expected = registered.digest
    if expected is None:
        raise UnservableModel(f"model {registered.version} has no content digest in the registry (registered "
                              f"before digests were recorded): refusing to serve it unverified")
    bucket, prefix = artefact_location(settings, registered)
    folder = settings.state_dir / "models" / expected
    if folder.is_dir():
        cached = _digest_or_none(folder)
        if cached == expected:
            return folder
        log.warning("cached artefact %s holds digest %s, not its name: downloading model %s again", folder,
                    cached, registered.version)
        _discard(folder)
    partial = folder.with_name(f".{expected}.{uuid.uuid4().hex}.partial")
    download_prefix(minio_client(settings), bucket, prefix, partial)
    actual = _digest_or_none(partial)
    if actual != expected:
        shutil.rmtree(partial, ignore_errors=True)
        raise UnservableModel(f"model {registered.version} at {registered.artefact_uri}: downloaded digest {actual}, "
                              f"registered digest {expected}; refusing to serve it")
    try:
        partial.rename(folder)
    except OSError:  # another worker's complete copy is in place already (verified again when loaded)
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def load_registered(settings: Settings, registered: RegisteredModel, threads: int | None = None) -> ActiveModel:
    """The registered model, loaded from verified bytes (the folder's digest is checked again after loading), on
    the runtime `WASTEX_SERVING_RUNTIME` forces, else the registry's."""
    runtime = settings.serving_runtime or registered.runtime
    why = ("set by WASTEX_SERVING_RUNTIME" if settings.serving_runtime else
           "the registry's choice" if registered.runtime else "none registered: the default chain")
    log.info("loading model %s on runtime %s (%s)", registered.version, runtime or "litert or keras", why)
    model = load_model_folder(registered.version, fetch_artefact(settings, registered), threads, runtime)
    if model.digest != registered.digest:  # a concurrent writer replaced the cache folder between fetch and load
        raise UnservableModel(f"model {registered.version}: loaded digest {model.digest}, registered digest "
                              f"{registered.digest}")
    if runtime is not None and model.runtime.runtime != runtime:
        why = f"{runtime} ({why}) cannot run here: fell back"
    return dataclasses.replace(model, served_because=why, runtime_check=registered.runtime_check)
