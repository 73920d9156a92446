"""The serving runtime is the fastest one whose decisions agree with Keras; the others say why they lost."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from infra.images import ImageLimits
from infra.model_frames import decode_frame
from infra.runtime_choice import (
    MIN_TOP1_AGREEMENT,
    CandidateFigures,
    RuntimeChoice,
    candidate_loaders,
    choose_runtime,
)
from infra.serving_runtimes import KerasModel
from schemas.model_artefact import KERAS_FILE, SERVING_FILE, ArtefactInfo, write_artefact_info
from schemas.ood_scores import Thresholds
from stream_apps.scoring.active_model import load_model_folder
from tests.controlled_models import GREEN, METAL_GLASS_PAPER, RED, controlled_model, photo
from training_job.serving_export import export_litert, sample_batch

pytestmark = pytest.mark.unit

AMD_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
INTEL_AMX = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
IMAGES = 64
THRESHOLDS = Thresholds(tau_energy=-2.0, tau_softmax=0.6)
RNG = np.random.default_rng(3)
# Confident logits (top class 8 above the rest): in-distribution under THRESHOLDS.
REFERENCE = RNG.normal(size=(IMAGES, 3)) + 8 * np.eye(3)[RNG.integers(0, 3, IMAGES)]
LABELS = np.where(np.arange(IMAGES) % 8 == 0, (REFERENCE.argmax(axis=1) + 1) % 3, REFERENCE.argmax(axis=1))


def indexed_pixels(count: int) -> np.ndarray:
    """Image i carries its index in its first pixel, so a fake runtime can answer per image."""
    pixels = np.zeros((count, 4, 4, 3), np.float32)
    pixels[:, 0, 0, 0] = np.arange(count)
    return pixels


class FakeRuntime:
    """Answers the logits in `table` for the images it is given, taking `delay` seconds per batch."""

    def __init__(self, table: np.ndarray, delay: float = 0.0) -> None:
        self._table, self._delay = table, delay

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        time.sleep(self._delay)
        return self._table[pixels[:, 0, 0, 0].astype(int)]


def fakes(**runtimes: tuple[np.ndarray, float]) -> dict[str, Callable[[], FakeRuntime]]:
    return {name.replace("_", "-"): (lambda table=table, delay=delay: FakeRuntime(table, delay))
            for name, (table, delay) in runtimes.items()}


def choose(loaders: dict[str, Callable[[], object]], forced: str | None = None, reference: np.ndarray = REFERENCE,
           labels: np.ndarray = LABELS) -> RuntimeChoice:
    return choose_runtime(Path("unused"), indexed_pixels(len(reference)), reference, labels, THRESHOLDS, threads=1,
                          forced=forced, loaders=loaders)


def figures(choice: RuntimeChoice, runtime: str) -> CandidateFigures:
    return next(candidate for candidate in choice.candidates if candidate.runtime == runtime)


def test_a_faster_runtime_whose_top_class_disagrees_is_rejected_and_keras_serves() -> None:
    wrong = REFERENCE.copy()
    wrong[:2] = np.roll(wrong[:2], 1, axis=1)  # two images of 64 change class: 97% agreement
    choice = choose(fakes(openvino_f32=(wrong, 0.0), keras=(REFERENCE, 0.01)))
    rejected = figures(choice, "openvino-f32")
    assert not rejected.accepted and rejected.top1_agreement < MIN_TOP1_AGREEMENT
    assert "top-1 agreement" in rejected.reason
    assert rejected.images_per_second > figures(choice, "keras").images_per_second
    assert choice.chosen == "keras" and not choice.forced


def test_the_fastest_of_the_accepted_runtimes_is_chosen() -> None:
    choice = choose(fakes(openvino_f32=(REFERENCE + 1e-5, 0.002), litert=(REFERENCE, 0.01), keras=(REFERENCE, 0.03)))
    assert all(candidate.accepted for candidate in choice.candidates)
    assert choice.chosen == "openvino-f32"
    assert figures(choice, "openvino-f32").top1_agreement == 1.0
    assert figures(choice, "openvino-f32").macro_f1 == pytest.approx(figures(choice, "keras").macro_f1)


def test_a_runtime_with_the_same_classes_but_different_ood_decisions_is_rejected() -> None:
    flat = REFERENCE / 20  # same argmax, but every image now has a low max softmax: OOD
    choice = choose(fakes(litert=(flat, 0.0), keras=(REFERENCE, 0.01)))
    rejected = figures(choice, "litert")
    assert rejected.top1_agreement == 1.0 and rejected.macro_f1_difference == 0.0
    assert not rejected.accepted and rejected.ood_agreement == 0.0 and "OOD agreement" in rejected.reason
    assert choice.chosen == "keras"


def test_a_runtime_that_misses_the_one_example_of_a_rare_class_is_rejected_on_macro_f1() -> None:
    # 400 images, one of them of class 2: missing it keeps top-1 agreement at 0.9975 but costs a third of macro-F1.
    classes = np.where(np.arange(400) == 7, 2, np.arange(400) % 2)
    reference = 4 * np.eye(3)[classes]
    worse = reference.copy()
    worse[7] = 4 * np.eye(3)[0]
    choice = choose(fakes(litert=(worse, 0.0), keras=(reference, 0.0)), reference=reference, labels=classes)
    rejected = figures(choice, "litert")
    assert rejected.top1_agreement >= MIN_TOP1_AGREEMENT and rejected.ood_agreement == 1.0
    assert not rejected.accepted and rejected.macro_f1_difference == pytest.approx(-1 / 3, abs=0.01)
    assert rejected.reason.startswith("macro-F1 differs")


def test_a_forced_runtime_serves_and_every_candidate_is_still_measured() -> None:
    choice = choose(fakes(litert=(REFERENCE, 0.0), keras=(REFERENCE, 0.01)), forced="keras")
    assert choice.chosen == "keras" and choice.forced
    assert {candidate.runtime for candidate in choice.candidates} == {"litert", "keras"}
    assert json.loads(json.dumps(choice.to_json()))["candidates"][0]["runtime"] == "litert"


def test_a_runtime_that_fails_to_load_is_skipped_with_its_reason() -> None:
    def broken() -> object:
        raise RuntimeError("unsupported operator")

    choice = choose({"openvino-f32": broken, **fakes(keras=(REFERENCE, 0.0))})
    assert choice.chosen == "keras" and "unsupported operator" in choice.skipped["openvino-f32"]


def test_bf16_is_a_candidate_only_on_a_cpu_that_runs_it_natively(tmp_path: Path) -> None:
    (tmp_path / "model.tflite").write_bytes(b"never loaded: loaders are lazy")
    loaders, skipped = candidate_loaders(tmp_path, threads=1, cpuinfo=AMD_AVX2)
    assert set(loaders) == {"openvino-f32", "litert", "keras"}
    assert "amx_bf16" in skipped["openvino-bf16"]
    loaders, skipped = candidate_loaders(tmp_path, threads=1, cpuinfo=INTEL_AMX)
    assert set(loaders) == {"openvino-f32", "openvino-bf16", "openvino-bf16-checked", "litert", "keras"}
    assert not skipped


def test_without_openvino_only_litert_and_keras_are_candidates(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.tflite").write_bytes(b"never loaded")
    monkeypatch.setitem(sys.modules, "openvino", None)
    loaders, skipped = candidate_loaders(tmp_path, threads=1, cpuinfo=INTEL_AMX)
    assert set(loaders) == {"litert", "keras"}
    assert all("cannot be imported" in skipped[name] for name in ("openvino-f32", "openvino-bf16"))


def test_on_a_real_export_openvino_litert_and_keras_all_agree_with_keras(tmp_path: Path) -> None:
    controlled_model(tmp_path / KERAS_FILE, METAL_GLASS_PAPER[1])
    assert export_litert(tmp_path).exported
    pixels = sample_batch(32, count=40)
    reference = KerasModel(tmp_path / KERAS_FILE).logits(pixels)
    choice = choose_runtime(tmp_path, pixels, reference, reference.argmax(axis=1), THRESHOLDS, threads=1,
                            cpuinfo=AMD_AVX2)
    assert {candidate.runtime for candidate in choice.candidates} == {"openvino-f32", "litert", "keras"}
    assert all(candidate.accepted and candidate.top1_agreement == 1.0 for candidate in choice.candidates)
    assert choice.chosen in {"openvino-f32", "litert", "keras"}
    assert set(choice.skipped) == {"openvino-bf16", "openvino-bf16-checked"}


def test_an_export_perturbed_to_disagree_is_rejected_on_every_runtime_that_reads_it_and_keras_serves(
        tmp_path: Path) -> None:
    weights = METAL_GLASS_PAPER[1]
    controlled_model(tmp_path / KERAS_FILE, weights)
    perturbed = tmp_path / "perturbed"
    perturbed.mkdir()
    # The export of a model whose metal and glass columns are swapped, put where the real export belongs.
    controlled_model(perturbed / KERAS_FILE, weights[:, [1, 0, 2]])
    assert export_litert(perturbed).exported
    (tmp_path / SERVING_FILE).write_bytes((perturbed / SERVING_FILE).read_bytes())
    limits = ImageLimits(max_bytes=2_000_000, max_pixels=4_000_000)
    pixels = np.stack([decode_frame(photo(colour, seed), 32, limits) for seed in range(20)
                       for colour in (RED, GREEN)]).astype(np.float32)
    reference = KerasModel(tmp_path / KERAS_FILE).logits(pixels)

    choice = choose_runtime(tmp_path, pixels, reference, reference.argmax(axis=1), THRESHOLDS, threads=1,
                            cpuinfo=AMD_AVX2)
    rejected = {candidate.runtime: candidate.reason for candidate in choice.candidates if not candidate.accepted}
    assert rejected.keys() == {"openvino-f32", "litert"}
    assert all("top-1 agreement" in reason for reason in rejected.values())
    assert choice.chosen == "keras"
    write_artefact_info(tmp_path, ArtefactInfo(METAL_GLASS_PAPER[0], THRESHOLDS.tau_energy, THRESHOLDS.tau_softmax))
    served = load_model_folder("perturbed", tmp_path, threads=1, runtime=choice.chosen)
    assert served.runtime.runtime == "keras"
    assert np.array_equal(served.runtime.logits(pixels).argmax(axis=1), reference.argmax(axis=1))
