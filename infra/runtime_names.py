"""The names of the serving runtimes, apart from the runtimes themselves so that settings can check a name
without importing numpy (infra.serving_runtimes loads and runs them)."""

from __future__ import annotations

KERAS = "keras"
LITERT = "litert"
OPENVINO = "openvino"
PRECISIONS = ("f32", "bf16")
OPENVINO_RUNTIMES = tuple(f"{OPENVINO}-{precision}" for precision in PRECISIONS)
# bf16 for every image, then f32 again for the images near a decision (infra.serving_runtimes.CheckedBF16Model).
CHECKED_BF16 = f"{OPENVINO}-bf16-checked"
RUNTIMES = (*OPENVINO_RUNTIMES, CHECKED_BF16, LITERT, KERAS)
