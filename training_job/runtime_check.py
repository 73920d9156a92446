"""The serving runtime of a model being registered: infra.runtime_choice on check images decoded exactly as the
scoring worker decodes them (infra.model_frames), measured on this machine with all its cores, as a worker loads.

The check images are:
- after a training run, up to CHECK_IMAGES of the version's val split (the first by content digest:
  deterministic, and a mix of classes as the split has them) with their true labels;
- for a user's import, which brings no images, the non-waste photo set of training_job.ood_photos (scikit-image's
  photographs, whole and as IMPORT_CROPS crops each: 126 JPEGs), labelled with the Keras model's own top class.
  The figures then say how closely a runtime follows Keras, not how accurate it is; and these are the photos the
  OOD thresholds must flag, so they put the OOD decisions to the test. A photo on which Keras has no top class
  (its two highest logits within TIE_TOLERANCE of the logits' range) has no label and is left out: any runtime's
  rounding would decide it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infra.cpu_budget import thread_budget
from infra.images import ImageLimits, ImageRefused
from infra.model_frames import decode_frame
from infra.runtime_choice import BATCH, RuntimeChoice, candidate_loaders, choose_runtime
from infra.runtime_names import KERAS
from infra.serving_runtimes import KerasModel
from schemas.model_artefact import KERAS_FILE, read_artefact_info
from training_job.dataset_source import Dataset, ImageLoader
from training_job.ood_photos import build_ood_photo_set

log = logging.getLogger(__name__)
# A bounded cost (under a minute on 2 cores for a 224 px model); at 0.995 top-1 agreement, one image of 256 may differ.
CHECK_IMAGES = 256
IMPORT_CROPS = 8
TIE_TOLERANCE = 1e-3  # the logit difference a LiteRT export may have from Keras (serving_export.export_litert)


@dataclass(frozen=True)
class CheckImages:
    """Encoded images, and their true class indices in the model's class order (None: Keras's top class)."""

    images: Sequence[bytes]
    labels: Sequence[int] | None
    source: str  # what they are, recorded with the figures


def split_check_images(dataset: Dataset, split: str, classes: list[str], loader: ImageLoader,
                       limit: int = CHECK_IMAGES) -> CheckImages:
    """Up to `limit` images of a dataset split, the first by content digest, with their true labels."""
    rows = sorted(dataset.split(split), key=lambda row: row.sha256)[:limit]
    return CheckImages(tuple(loader(row.image) for row in rows), tuple(dataset.labels(rows, classes).tolist()),
                       f"{len(rows)} images of the {split} split")


@functools.cache  # the same photos every time: a process registering several models builds them once
def photo_check_images() -> CheckImages:
    """The non-waste photo set (see the module docstring), labelled later with Keras's own top class."""
    with tempfile.TemporaryDirectory(prefix="wastex-check-") as folder:
        paths = build_ood_photo_set(Path(folder), crops_per_photo=IMPORT_CROPS)
        return CheckImages(tuple(path.read_bytes() for path in paths), None,
                           f"{len(paths)} non-waste photos labelled with the Keras model's top class")


def check_runtime(folder: Path, check: CheckImages, limits: ImageLimits) -> tuple[RuntimeChoice, dict[str, Any]]:
    """The runtime to serve the artefact in `folder` on, and the record of the measurement for the registry."""
    started = time.monotonic()
    reference_model = KerasModel(folder / KERAS_FILE)
    pixels, labels = _frames(check, reference_model.input_size, limits)
    reference = np.concatenate([reference_model.logits(pixels[start:start + BATCH])
                                for start in range(0, len(pixels), BATCH)])
    source = check.source
    if labels is None:
        pixels, reference, ties = _without_ties(pixels, reference)
        source += f" ({ties} left out: Keras has no top class on them)" if ties else ""
    info = read_artefact_info(folder)
    threads = thread_budget().model  # as a worker on this machine runs it
    loaders, skipped = candidate_loaders(folder, threads)
    loaders[KERAS] = lambda: reference_model  # loaded and traced already: measured as it is, not loaded again
    choice = choose_runtime(folder, pixels, reference, reference.argmax(axis=1) if labels is None else labels,
                            info.thresholds, threads, loaders=loaders)
    choice = dataclasses.replace(choice, skipped={**skipped, **choice.skipped})
    seconds = time.monotonic() - started
    log.info("runtime check on %s: %s serves (%.1f s)", source, choice.chosen, seconds)
    return choice, {**choice.to_json(), "check_images": source, "seconds": round(seconds, 1)}


def _without_ties(pixels: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The images on which Keras has a top class, their logits, and how many were left out (none when every
    image ties: a model that decides nothing is still measured)."""
    top_two = np.sort(reference, axis=1)[:, -2:]
    decided = top_two[:, 1] - top_two[:, 0] > TIE_TOLERANCE * max(1.0, float(np.ptp(reference)))
    if not decided.any():
        return pixels, reference, 0
    return pixels[decided], reference[decided], int((~decided).sum())


def _frames(check: CheckImages, size: int, limits: ImageLimits) -> tuple[np.ndarray, np.ndarray | None]:
    """The decodable images as a float32 batch, and their labels; an image the workers would refuse is left out."""
    frames, labels = [], []
    for index, data in enumerate(check.images):
        try:
            frames.append(decode_frame(data, size, limits))
        except ImageRefused as refusal:
            log.warning("check image %d of %s left out: %s", index, check.source, refusal)
            continue
        if check.labels is not None:
            labels.append(check.labels[index])
    if not frames:
        raise ValueError(f"none of the {len(check.images)} check images ({check.source}) can be decoded")
    return np.stack(frames).astype(np.float32), None if check.labels is None else np.array(labels)
