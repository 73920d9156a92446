"""The runtimes a model can serve on, all answering `scores(pixels) -> (logits, embeddings | None)`.

Keras runs the `.keras` file itself; LiteRT (XNNPACK) and OpenVINO (its TFLite frontend, in f32 or bf16, or bf16
checked in f32 near a decision) all run the LiteRT export `model.tflite`. Which one serves is chosen per model by
measurement (infra.runtime_choice); without a choice the worker serves LiteRT when an export exists, else Keras.
Shared by the scoring worker and the trainer, which measures the candidates when it registers a model.

The embeddings are the model's penultimate features (what its last Dense layer reads); a LiteRT export made before
they were exported has only the logits output and serves without embeddings. A two-output export names its
signature outputs "logits" and "embedding" (training_job.serving_export), because LiteRT does not keep the output
order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from infra.cpu_budget import usable_cores
from infra.runtime_names import CHECKED_BF16, KERAS, LITERT, OPENVINO, OPENVINO_RUNTIMES, PRECISIONS, RUNTIMES
from schemas.model_artefact import KERAS_FILE, SERVING_FILE, read_artefact_info
from schemas.ood_scores import Thresholds, near_a_decision

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)
LOGITS_OUTPUT = "logits"
EMBEDDING_OUTPUT = "embedding"
# CPU flags under which OpenVINO runs bf16 in hardware; elsewhere it would silently compute in f32.
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
# One synchronous request per batch: THROUGHPUT splits the threads into streams and that request gets only one
# (measured at batch 32 on 2 cores, bf16: THROUGHPUT 126 img/s, LATENCY 221 img/s).
OPENVINO_PERFORMANCE_HINT = "LATENCY"
# How far bf16 logits may stray from f32 before a close call must be scored again: about the 90th percentile of
# the largest per-image difference on TrashNet models (median 0.1, maximum 0.46); the runtime check then measures
# whether the result decides as Keras does for each model.
BF16_TOLERANCE = 0.2


class LiteRTModel:
    """A LiteRT interpreter whose input is resized only when the batch size changes."""

    runtime = LITERT

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self._input = self._interpreter.get_input_details()[0]
        outputs = self._interpreter.get_output_details()
        if len(outputs) == 1:
            self._logits, self._embedding = outputs[0]["index"], None
        else:
            named = self._interpreter.get_signature_runner().get_output_details()
            self._logits, self._embedding = named[LOGITS_OUTPUT]["index"], named[EMBEDDING_OUTPUT]["index"]
        self.input_size = int(self._input["shape"][1])
        self._batch = 0

    def scores(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if pixels.shape[0] != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], [pixels.shape[0], *pixels.shape[1:]])
            self._interpreter.allocate_tensors()
            self._batch = pixels.shape[0]
        self._interpreter.set_tensor(self._input["index"], pixels.astype(np.float32, copy=False))
        self._interpreter.invoke()
        logits = np.array(self._interpreter.get_tensor(self._logits))
        embeddings = None if self._embedding is None else np.array(self._interpreter.get_tensor(self._embedding))
        return logits, embeddings

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        return self.scores(pixels)[0]


def embedding_tensor(model: keras.Model) -> Any:
    """What the model's last Dense layer reads, or None when the model does not end in one Dense layer."""
    import keras

    head = model.layers[-1]
    return head.input if len(model.outputs) == 1 and isinstance(head, keras.layers.Dense) else None


class KerasModel:
    """The `.keras` file itself, compiled once into a graph function (faster than `predict`)."""

    runtime = KERAS

    def __init__(self, path: Path) -> None:
        import keras
        import tensorflow as tf

        model = keras.models.load_model(path, compile=False)
        features = embedding_tensor(model)
        outputs = {LOGITS_OUTPUT: model.output}
        if features is not None:
            outputs[EMBEDDING_OUTPUT] = features
        self._model = keras.Model(model.input, outputs)
        self._call = tf.function(lambda x: self._model(x, training=False), reduce_retracing=True)
        self.input_size = int(model.input_shape[1])

    def scores(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self._call(pixels.astype(np.float32, copy=False))
        embeddings = outputs.get(EMBEDDING_OUTPUT)
        return np.asarray(outputs[LOGITS_OUTPUT]), None if embeddings is None else np.asarray(embeddings)

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        return self.scores(pixels)[0]


@dataclass(frozen=True)
class PrecisionSupport:
    """The precisions this CPU runs natively, and why the others are left out."""

    native: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)


def cpu_flags(cpuinfo: str | None = None) -> set[str] | str:
    """The CPU's feature flags, from the `flags` lines of `/proc/cpuinfo` (or the text given); a str says why
    they cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError as error:
            return f"cannot read /proc/cpuinfo ({error})"
    return {flag for line in cpuinfo.splitlines() if line.startswith("flags")
            for flag in line.partition(":")[2].split()}


def cpu_precisions(cpuinfo: str | None = None) -> PrecisionSupport:
    """What the CPU computes natively."""
    flags = cpu_flags(cpuinfo)
    if isinstance(flags, str):
        return PrecisionSupport(("f32",), {"bf16": flags})
    if flags & BF16_FLAGS:
        return PrecisionSupport(("f32", "bf16"))
    return PrecisionSupport(("f32",), {"bf16": f"the CPU has none of the flags {', '.join(sorted(BF16_FLAGS))}"})


def openvino_unavailable(precision: str, cpuinfo: str | None = None) -> str | None:
    """Why OpenVINO cannot serve in `precision` here, or None when it can."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})"
    support = cpu_precisions(cpuinfo)
    if precision not in support.native:
        return support.skipped[precision]
    try:
        import openvino  # noqa: F401
    except ImportError as error:
        return f"openvino cannot be imported ({error})"
    return None


def _signature_output_tensors(path: Path) -> dict[str, str]:
    """The tensor name of each named output of a LiteRT export: OpenVINO keeps tensor names, not signature names."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    outputs = interpreter.get_output_details()
    if len(outputs) == 1:
        return {LOGITS_OUTPUT: outputs[0]["name"]}
    named = interpreter.get_signature_runner().get_output_details()
    return {name: named[name]["name"] for name in (LOGITS_OUTPUT, EMBEDDING_OUTPUT)}


class OpenVINOModel:
    """The LiteRT export compiled by OpenVINO for the CPU, with a dynamic batch dimension."""

    def __init__(self, path: Path, threads: int, precision: str = "f32") -> None:
        import openvino as ov

        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
        core = ov.Core()
        model = core.read_model(str(path))
        entry = model.inputs[0]
        self.input_size = int(entry.get_partial_shape()[1].get_length())
        # An export may fix the batch at 1; a dynamic batch serves every micro-batch size without recompiling.
        model.reshape({entry: ov.PartialShape([-1, self.input_size, self.input_size, 3])})
        compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": precision,  # explicit: on AMX CPUs OpenVINO would pick bf16 by itself
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": OPENVINO_PERFORMANCE_HINT,
        })
        tensors = _signature_output_tensors(path)
        ports = {name: next(port for port in compiled.outputs if tensor in port.get_names())
                 for name, tensor in tensors.items()}
        self._logits, self._embedding = ports[LOGITS_OUTPUT], ports.get(EMBEDDING_OUTPUT)
        self._request = compiled.create_infer_request()
        self.runtime = f"{OPENVINO}-{precision}"

    def scores(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        results = self._request.infer({0: pixels.astype(np.float32, copy=False)})
        logits = np.array(results[self._logits])
        return logits, None if self._embedding is None else np.array(results[self._embedding])

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        return self.scores(pixels)[0]


class CheckedBF16Model:
    """OpenVINO bf16 for every image, and f32 again for the images whose bf16 scores lie within BF16_TOLERANCE of
    a decision (top class or the OOD flag of the model's regular thresholds): bf16's speed far from a decision, f32's
    answer near one, where bf16's rounding could change it.

    The stricter pair for drifting cameras is not checked: its softmax threshold sits where most images' top
    probability lies (0.65-0.73 on TrashNet models), so checking it re-scored 92-96% of images in f32 and made the
    runtime slower than f32 alone. On a drifting camera an image within bf16's rounding of that pair may go either way.
    """

    runtime = CHECKED_BF16

    def __init__(self, path: Path, threads: int, thresholds: Thresholds) -> None:
        self._fast = OpenVINOModel(path, threads, "bf16")
        self._exact = OpenVINOModel(path, threads, "f32")
        self._thresholds = thresholds
        self.input_size = self._fast.input_size

    def scores(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        logits, embeddings = self._fast.scores(pixels)
        close = near_a_decision(logits, self._thresholds, BF16_TOLERANCE)
        if close.any():
            exact_logits, exact_embeddings = self._exact.scores(pixels[close])
            logits[close] = exact_logits
            if embeddings is not None and exact_embeddings is not None:
                embeddings[close] = exact_embeddings
        return logits, embeddings

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        return self.scores(pixels)[0]


def checked_bf16_model(folder: Path, threads: int) -> CheckedBF16Model:
    """The checked bf16 runtime for the artefact in `folder`, with the model's own OOD thresholds."""
    info = read_artefact_info(folder)
    return CheckedBF16Model(folder / SERVING_FILE, threads, info.thresholds)


ServingModel = OpenVINOModel | CheckedBF16Model | LiteRTModel | KerasModel


def load_serving_model(folder: Path, threads: int | None = None, runtime: str | None = None) -> ServingModel:
    """The named runtime, falling back openvino -> litert -> keras (with the reason logged) when it cannot load;
    without a name, LiteRT when the artefact has an export, else Keras."""
    if runtime is not None and runtime not in RUNTIMES:
        raise ValueError(f"unknown serving runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
    threads = threads or usable_cores()
    serving = folder / SERVING_FILE
    if runtime in OPENVINO_RUNTIMES or runtime == CHECKED_BF16:
        precision = "bf16" if runtime == CHECKED_BF16 else runtime.removeprefix(f"{OPENVINO}-")
        reason = openvino_unavailable(precision) or (None if serving.exists() else f"no LiteRT export in {folder}")
        if reason is None:
            try:
                if runtime == CHECKED_BF16:
                    return checked_bf16_model(folder, threads)
                return OpenVINOModel(serving, threads, precision)
            except Exception as error:
                reason = str(error)
        log.warning("%s cannot serve (%s); trying LiteRT", runtime, reason)
    if runtime == KERAS:
        return KerasModel(folder / KERAS_FILE)
    if serving.exists():
        try:
            return LiteRTModel(serving, threads)
        except Exception as error:
            log.warning("LiteRT could not load %s (%s); serving the Keras model instead", serving, error)
    else:
        log.warning("no LiteRT export in %s; serving the Keras model (slower)", folder)
    return KerasModel(folder / KERAS_FILE)
