"""EfficientNet-Lite0 (Tan & Le; the TF "lite" variant) built from plain Keras layers.

Lite0 is EfficientNet-B0 without squeeze-excite, with ReLU6 instead of swish and with the stem (32) and
head (1280) widths fixed. Layer names are stable (``stem_conv``, ``block3_dwconv``, ``head_bn``, ...)
because the ImageNet weight port maps onto them by name; block indices equal the ``_blocks.N`` indices of
the PyTorch checkpoint.

The input normalisation is a ``Rescaling`` layer inside the model (as ``include_preprocessing`` does for
``keras.applications.EfficientNet``): the model takes float32 RGB pixels in [0, 255], the input the model
artefact contract (``schemas/model_artefact.py``) asks for, so the ``.keras`` file and its TFLite export
need no preprocessing outside the graph, and training and serving cannot disagree about it.
"""

from __future__ import annotations

from typing import NamedTuple

import keras

INPUT_SIZE = 224
STEM_FILTERS = 32
HEAD_FILTERS = 1280
# The checkpoint was trained in TF: eps 1e-3, and TF momentum 0.99 is PyTorch's 0.01.
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
DROPOUT_RATE = 0.2
DROP_CONNECT_RATE = 0.2

# Initialisers of the reference TF implementation, so that a from-scratch model trains as the paper's.
CONV_INITIALIZER = keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="truncated_normal")
DENSE_INITIALIZER = keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_out", distribution="uniform")


class Stage(NamedTuple):
    repeats: int
    kernel_size: int
    strides: int
    expand_ratio: int
    filters: int


# EfficientNet-B0's stages, which Lite0 keeps unscaled (width and depth coefficients 1.0).
STAGES = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)
NUM_BLOCKS = sum(stage.repeats for stage in STAGES)


def rescaling_layer() -> keras.layers.Rescaling:
    """RGB pixels in [0, 255] -> (x - 127) / 128, about [-1, 1]: the scaling the ImageNet weights expect.

    The checkpoint is Google's TF EfficientNet-Lite0 converted to PyTorch, and the TF Lite builder trains
    with mean 127 and stddev 128 on every channel (chosen there for int8 post-training quantisation).
    The sample photographs in ``tests/unit/test_efficientnet_port.py`` land in their classes with it and
    not without it; they cannot tell it apart from ImageNet mean/std normalisation, though.
    """
    return keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="rescaling")


def _batch_norm(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _conv_bn_relu(
    x: keras.KerasTensor, filters: int, kernel_size: int, strides: int, name: str
) -> keras.KerasTensor:
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False,
        kernel_initializer=CONV_INITIALIZER, name=f"{name}_conv",
    )(x)
    x = _batch_norm(f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(x)


def _mbconv_block(x: keras.KerasTensor, stage: Stage, strides: int, index: int) -> keras.KerasTensor:
    name = f"block{index}"
    inputs = x
    filters_in = x.shape[-1]
    if stage.expand_ratio != 1:
        x = _conv_bn_relu(x, filters_in * stage.expand_ratio, 1, 1, name=f"{name}_expand")
    x = keras.layers.DepthwiseConv2D(
        stage.kernel_size, strides=strides, padding="same", use_bias=False,
        depthwise_initializer=CONV_INITIALIZER, name=f"{name}_dwconv",
    )(x)
    x = _batch_norm(f"{name}_dwconv_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_dwconv_relu")(x)
    x = keras.layers.Conv2D(
        stage.filters, 1, padding="same", use_bias=False, kernel_initializer=CONV_INITIALIZER,
        name=f"{name}_project_conv",
    )(x)
    x = _batch_norm(f"{name}_project_bn")(x)
    if strides == 1 and filters_in == stage.filters:
        # Stochastic depth, growing linearly with depth as in the reference implementation.
        rate = DROP_CONNECT_RATE * index / NUM_BLOCKS
        x = keras.layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def build_efficientnet_lite0(
    input_shape: tuple[int, int, int] = (INPUT_SIZE, INPUT_SIZE, 3),
    include_top: bool = True,
    num_classes: int = 1000,
    pooling: str | None = None,
    include_preprocessing: bool = True,
) -> keras.Model:
    """Build an untrained EfficientNet-Lite0.

    With ``include_preprocessing`` the model takes RGB pixels in [0, 255]; without it, pixels already
    scaled as ``rescaling_layer`` does.

    With ``include_top`` the model ends in ``predictions``, a Dense layer emitting logits (no softmax:
    the OOD energy score needs logits). Without it the output is the 1280-channel feature map, or its
    global average (``pooling="avg"``). Convolutions use TF 'same' padding, which pads one pixel more at
    the bottom/right for stride 2; the checkpoint was trained that way.
    """
    if pooling not in (None, "avg"):
        raise ValueError(f"pooling must be None or 'avg', got {pooling!r}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = rescaling_layer()(inputs) if include_preprocessing else inputs
    x = _conv_bn_relu(x, STEM_FILTERS, 3, 2, name="stem")
    index = 0
    for stage in STAGES:
        for repeat in range(stage.repeats):
            x = _mbconv_block(x, stage, stage.strides if repeat == 0 else 1, index)
            index += 1
    x = _conv_bn_relu(x, HEAD_FILTERS, 1, 1, name="head")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(DROPOUT_RATE, name="top_dropout")(x)
        x = keras.layers.Dense(num_classes, kernel_initializer=DENSE_INITIALIZER, name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")
