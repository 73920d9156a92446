"""The model artefact: what training_job writes and the scoring workers read (a folder, or a MinIO prefix).

The model takes float32 RGB pixels in [0, 255] at its square input size, the full frame resized
bilinearly (no crop); any normalisation is a layer inside the model, so every runtime feeds the same input.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from schemas.ood_scores import Thresholds

KERAS_FILE = "model.keras"  # the source of truth
SERVING_FILE = "model.tflite"  # LiteRT export made at import or promotion; optional
CLASSES_FILE = "classes.txt"  # one class name per line, in logit order
# {"tau_energy": float, "tau_softmax": float, "energy_quantiles": [101 floats], optional, absent in older artefacts,
#  "drifting_camera": {"tau_energy": float, "tau_softmax": float}, optional: the stricter pair for drifting cameras}
THRESHOLDS_FILE = "thresholds.json"
METRICS_FILE = "metrics.json"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"  # drawn from the metrics of the evaluated split

# What a worker loads, so what the content digest covers; metrics and plots may be added to the folder later.
REQUIRED_FILES = (KERAS_FILE, CLASSES_FILE, THRESHOLDS_FILE)
DIGEST_FILES = (*REQUIRED_FILES, SERVING_FILE)


@dataclass(frozen=True)
class ArtefactInfo:
    classes: list[str]
    tau_energy: float
    tau_softmax: float
    # Percentiles 0..100 of the energies of the images the thresholds were calibrated on: the in-distribution
    # reference of drift checks. None for a model that brings no calibration (an import, an older artefact).
    energy_quantiles: list[float] | None = None
    # The stricter pair for images of a camera the scoring monitor marks drifting; None: the regular pair serves them.
    drifting_camera: Thresholds | None = None

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.tau_energy, self.tau_softmax)

    @property
    def drifting_camera_thresholds(self) -> Thresholds:
        return self.thresholds if self.drifting_camera is None else self.drifting_camera


def read_artefact_info(folder: Path) -> ArtefactInfo:
    classes = [line.strip() for line in (folder / CLASSES_FILE).read_text().splitlines() if line.strip()]
    thresholds = json.loads((folder / THRESHOLDS_FILE).read_text())
    quantiles = thresholds.get("energy_quantiles")
    drifting = thresholds.get("drifting_camera")
    return ArtefactInfo(classes, float(thresholds["tau_energy"]), float(thresholds["tau_softmax"]),
                        None if quantiles is None else [float(value) for value in quantiles],
                        None if drifting is None else Thresholds(float(drifting["tau_energy"]),
                                                                 float(drifting["tau_softmax"])))


def write_artefact_info(folder: Path, info: ArtefactInfo) -> None:
    (folder / CLASSES_FILE).write_text("".join(f"{name}\n" for name in info.classes))
    thresholds: dict = {"tau_energy": info.tau_energy, "tau_softmax": info.tau_softmax}
    if info.energy_quantiles is not None:
        thresholds["energy_quantiles"] = info.energy_quantiles
    if info.drifting_camera is not None:
        thresholds["drifting_camera"] = {"tau_energy": info.drifting_camera.tau_energy,
                                         "tau_softmax": info.drifting_camera.tau_softmax}
    (folder / THRESHOLDS_FILE).write_text(json.dumps(thresholds, indent=2) + "\n")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artefact_digest(folder: Path) -> str:
    """The artefact's content address: sha256 over the sorted (file name, file sha256) pairs of the files a
    worker loads. Raises FileNotFoundError when a required file is missing."""
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} holds no {', '.join(missing)}")
    digest = hashlib.sha256()
    for name in sorted(name for name in DIGEST_FILES if (folder / name).is_file()):
        digest.update(f"{name}\0{file_sha256(folder / name)}\n".encode())
    return digest.hexdigest()
