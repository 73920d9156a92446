"""Which runtime serves a model, chosen by measurement: the fastest one that decides as Keras does.

Every candidate (OpenVINO in each precision this CPU runs natively, LiteRT, Keras itself) scores the same check
images; one is accepted when its top-1 class, macro-F1 and OOD decisions agree with the Keras reference within the
limits below. Keras is the reference, so it is always acceptable. The figures are kept for every candidate, also
when the choice is forced, so a registry can show why a runtime serves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from infra.serving_runtimes import (
    CHECKED_BF16,
    KERAS,
    LITERT,
    OPENVINO,
    PRECISIONS,
    RUNTIMES,
    KerasModel,
    LiteRTModel,
    OpenVINOModel,
    ServingModel,
    checked_bf16_model,
    openvino_unavailable,
)
from schemas.model_artefact import KERAS_FILE, SERVING_FILE
from schemas.ood_scores import Thresholds, is_ood

log = logging.getLogger(__name__)
MIN_TOP1_AGREEMENT = 0.995
MAX_MACRO_F1_DIFFERENCE = 0.005
MIN_OOD_AGREEMENT = 0.99
BATCH = 32  # the scoring workers' micro-batch size
TIMED_IMAGES = 128  # per round: several batches, since a checked runtime's cost depends on the images
# The best of several rounds, each round timing every candidate in turn: on a shared machine a neighbour's burst
# then slows one round of all of them rather than every round of one (seen: a runtime measured at half its speed
# in a choice that timed each candidate's rounds back to back).
TIMED_ROUNDS = 3


@dataclass(frozen=True)
class CandidateFigures:
    runtime: str
    top1_agreement: float
    macro_f1: float
    macro_f1_difference: float  # candidate minus Keras, on the true labels
    ood_agreement: float
    images_per_second: float  # raw model throughput at `BATCH`, decode excluded
    accepted: bool
    reason: str | None  # why it was rejected; None when accepted


@dataclass(frozen=True)
class RuntimeChoice:
    chosen: str
    forced: bool
    candidates: list[CandidateFigures]
    skipped: dict[str, str]  # runtime -> why it was not measured

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Loader = Callable[[], ServingModel]


def candidate_loaders(folder: Path, threads: int, cpuinfo: str | None = None
                      ) -> tuple[dict[str, Loader], dict[str, str]]:
    """A loader for each runtime this machine can measure on the artefact, and why the others are skipped."""
    loaders: dict[str, Loader] = {}
    skipped: dict[str, str] = {}
    serving = folder / SERVING_FILE
    for precision in PRECISIONS:
        name = f"{OPENVINO}-{precision}"
        reason = openvino_unavailable(precision, cpuinfo) or (None if serving.exists() else "no LiteRT export")
        if reason is None:
            loaders[name] = lambda precision=precision: OpenVINOModel(serving, threads, precision)
        else:
            skipped[name] = reason
    if f"{OPENVINO}-bf16" in loaders:
        loaders[CHECKED_BF16] = lambda: checked_bf16_model(folder, threads)
    else:
        skipped[CHECKED_BF16] = skipped[f"{OPENVINO}-bf16"]
    if serving.exists():
        loaders[LITERT] = lambda: LiteRTModel(serving, threads)
    else:
        skipped[LITERT] = "no LiteRT export"
    loaders[KERAS] = lambda: KerasModel(folder / KERAS_FILE)
    for name, reason in skipped.items():
        log.info("runtime %s skipped: %s", name, reason)
    return loaders, skipped


def _all_logits(model: ServingModel, pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([model.logits(pixels[start:start + BATCH]) for start in range(0, len(pixels), BATCH)])


def _speeds(models: Mapping[str, ServingModel], pixels: np.ndarray) -> dict[str, float]:
    """Images/s of each model on up to TIMED_IMAGES check images in whole batches (the check pass ran them at these
    sizes already), the best of TIMED_ROUNDS rounds that each time every model in turn."""
    timing = pixels[:min(TIMED_IMAGES, max(BATCH, len(pixels) // BATCH * BATCH))]
    for model in models.values():
        model.logits(timing[:BATCH])  # the last check batch may have resized a runtime: resize back off the clock
    best = dict.fromkeys(models, float("inf"))
    for _ in range(TIMED_ROUNDS):
        for runtime, model in models.items():
            started = time.perf_counter()
            _all_logits(model, timing)
            best[runtime] = min(best[runtime], time.perf_counter() - started)
    return {runtime: len(timing) / seconds for runtime, seconds in best.items()}


def _figures(runtime: str, logits: np.ndarray, speed: float, reference: np.ndarray, labels: np.ndarray,
             thresholds: Thresholds) -> CandidateFigures:
    classes = np.arange(reference.shape[1])  # the same label set for both, whatever the check images cover
    predicted, expected = logits.argmax(axis=1), reference.argmax(axis=1)
    macro_f1 = float(f1_score(labels, predicted, labels=classes, average="macro", zero_division=0))
    difference = macro_f1 - float(f1_score(labels, expected, labels=classes, average="macro", zero_division=0))
    top1 = float(np.mean(predicted == expected))
    ood = float(np.mean(is_ood(logits, thresholds) == is_ood(reference, thresholds)))
    failures = [f"top-1 agreement {top1:.4f} < {MIN_TOP1_AGREEMENT}"] if top1 < MIN_TOP1_AGREEMENT else []
    if abs(difference) > MAX_MACRO_F1_DIFFERENCE:
        failures.append(f"macro-F1 differs by {difference:+.4f} (limit {MAX_MACRO_F1_DIFFERENCE})")
    if ood < MIN_OOD_AGREEMENT:
        failures.append(f"OOD agreement {ood:.4f} < {MIN_OOD_AGREEMENT}")
    accepted = runtime == KERAS or not failures  # Keras is what the others are measured against
    return CandidateFigures(runtime, top1, macro_f1, difference, ood, speed, accepted,
                            None if accepted else "; ".join(failures))


def choose_runtime(folder: Path, pixels: np.ndarray, reference_logits: np.ndarray, labels: np.ndarray,
                   thresholds: Thresholds, threads: int, forced: str | None = None,
                   loaders: Mapping[str, Loader] | None = None, cpuinfo: str | None = None) -> RuntimeChoice:
    """Measure every candidate on the check images (float32 RGB in [0, 255]) against Keras's logits on them and
    their true class indices; choose the fastest accepted one, or `forced` (figures are still measured).

    `loaders` replaces the candidates found in `folder` (tests inject runtimes with known outputs)."""
    if forced is not None and forced not in RUNTIMES:
        raise ValueError(f"unknown serving runtime {forced!r} (known: {', '.join(RUNTIMES)})")
    skipped: dict[str, str] = {}
    if loaders is None:
        loaders, skipped = candidate_loaders(folder, threads, cpuinfo)
    models: dict[str, ServingModel] = {}
    outputs: dict[str, np.ndarray] = {}
    for runtime, load in loaders.items():
        try:
            models[runtime] = load()
            outputs[runtime] = _all_logits(models[runtime], pixels)
        except Exception as error:  # a runtime that cannot load or run this model is skipped, not fatal
            models.pop(runtime, None)
            skipped[runtime] = f"failed: {error}"
            log.warning("runtime %s failed on %s: %s", runtime, folder, error)
    speeds = _speeds(models, pixels)
    candidates = [_figures(runtime, outputs[runtime], speeds[runtime], reference_logits, np.asarray(labels),
                           thresholds) for runtime in models]
    accepted = [candidate for candidate in candidates if candidate.accepted]
    if forced is not None:
        chosen = forced
    elif accepted:
        chosen = max(accepted, key=lambda candidate: candidate.images_per_second).runtime
    else:
        raise RuntimeError(f"no runtime could serve {folder}: {skipped}")
    log.info("serving runtime for %s: %s%s", folder, chosen, " (forced)" if forced else "")
    return RuntimeChoice(chosen, forced is not None, candidates, skipped)
