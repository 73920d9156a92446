"""tf.data input: image bytes -> model input frames -> (augmented) batches, and class and site weights.

Frames follow the model artefact contract (``schemas/model_artefact.py``): float32 RGB in [0, 255], the
full frame resized bilinearly to the model's square input, no crop. Normalisation is inside the model.
Augmentation (random crops, flips, rotations, keystone, colour jitter, and the site look variations of
``site_augmentation``: generated floors and white balance) is for training only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from sklearn.utils.class_weight import compute_class_weight

from training_job.dataset_source import ImageLoader
from training_job.site_augmentation import SAME_LOOK, LookVariation, vary_look

AUTOTUNE = tf.data.AUTOTUNE
Preprocess = Callable[[tf.Tensor], tf.Tensor]


def frame_preprocessor(input_size: int) -> Preprocess:
    """Decoded RGB image(s) -> the model's input, as ``Backbone.preprocess`` and the scoring workers do."""
    def preprocess(image: tf.Tensor) -> tf.Tensor:
        return tf.image.resize(image, (input_size, input_size), method="bilinear", antialias=True)

    return preprocess


def decode_frame(data: tf.Tensor) -> tf.Tensor:
    """JPEG/PNG/BMP/GIF bytes -> (height, width, 3) uint8; the first frame of an animation."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


# Crops keep 65-100% of the frame at an aspect within 0.8-1.25, then are resized to the input as usual.
CROP_AREA = (0.65, 1.0)
CROP_ASPECT = (0.8, 1.25)
MAX_ROTATION = 0.085  # fraction of a full turn: about 30 degrees either way, as a camera mounted askew sees
MAX_KEYSTONE = 0.15  # a camera looking down at a slant: the far edge wider by up to this share of the width
BRIGHTNESS_DELTA = 0.12 * 255
CONTRAST_RANGE = (0.85, 1.15)
SATURATION_RANGE = (0.75, 1.3)
HUE_DELTA = 0.03


def _keystone_map(tilt: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """3x3 map of output to input pixels: the top edge reads a span ``tilt`` of the width wider (or narrower, when
    negative) on each side; the bottom edge is kept."""
    # Solved in coordinates where the frame is the unit square, then scaled to pixels.
    corners = [((0.0, 0.0), (-tilt, 0.0)), ((1.0, 0.0), (1.0 + tilt, 0.0)), ((1.0, 1.0), (1.0, 1.0)),
               ((0.0, 1.0), (0.0, 1.0))]
    rows, targets = [], []
    for (x, y), (u, v) in corners:
        rows += [tf.stack([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y]),
                 tf.stack([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y])]
        targets += [u, v]
    unit = tf.reshape(tf.concat([tf.linalg.solve(tf.stack(rows), tf.stack(targets)[:, tf.newaxis])[:, 0], [1.0]], 0),
                      [3, 3])
    scale = tf.linalg.diag(tf.stack([width, height, 1.0]))
    return scale @ unit @ tf.linalg.inv(scale)


def _rotation_map(angle: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """3x3 map of output to input pixels: a turn by ``angle`` (radians) about the frame's centre."""
    cos, sin = tf.cos(angle), tf.sin(angle)
    centre_x, centre_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    return tf.stack([[cos, -sin, centre_x - cos * centre_x + sin * centre_y],
                     [sin, cos, centre_y - sin * centre_x - cos * centre_y],
                     [0.0, 0.0, 1.0]])


def camera_view(frame: tf.Tensor, seed: tf.Tensor, max_rotation: float = MAX_ROTATION,
                max_keystone: float = MAX_KEYSTONE) -> tf.Tensor:
    """``frame`` as a camera turned by up to ``max_rotation`` of a full turn and tilted towards its top or bottom
    edge (a keystone of up to ``max_keystone`` of the width on each side) sees it; one resampling for both, the
    picture keeps its size and reflects into the corners it leaves."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    angle = 2.0 * math.pi * tf.random.stateless_uniform([], seeds[0], -max_rotation, max_rotation)
    tilt = tf.random.stateless_uniform([], seeds[1], -max_keystone, max_keystone)
    height, width = tf.unstack(tf.cast(tf.shape(frame)[:2], tf.float32))
    view = _rotation_map(angle, height, width) @ _keystone_map(tilt, height, width)
    transform = tf.reshape(view / view[2, 2], [9])[:8]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=frame[tf.newaxis], transforms=transform[tf.newaxis], output_shape=tf.shape(frame)[:2],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")[0]


def augmented_frame(image: tf.Tensor, seed: tf.Tensor, preprocess: Preprocess,
                    variation: LookVariation = SAME_LOOK) -> tf.Tensor:
    """One random view of a decoded image: crop, flips, resize, camera angle, look variation, colour jitter
    (seeded, so repeatable).

    The crop is taken before the resize, so it costs nothing beyond the resize every frame needs. Waste
    lies on a belt in any orientation, so both flips are fair.
    """
    seeds = tf.random.experimental.stateless_split(seed, 9)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seeds[0],
        min_object_covered=0.0, aspect_ratio_range=CROP_ASPECT, area_range=CROP_AREA,
        use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, size)
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    image = tf.image.stateless_random_flip_up_down(image, seeds[2])
    frame = vary_look(camera_view(preprocess(image), seeds[8]), seeds[7], variation)
    # Hue and saturation are ratios of channels, so they work on [0, 255] floats unchanged.
    frame = tf.image.stateless_random_brightness(frame, BRIGHTNESS_DELTA, seeds[3])
    frame = tf.image.stateless_random_contrast(frame, *CONTRAST_RANGE, seeds[4])
    frame = tf.image.stateless_random_saturation(frame, *SATURATION_RANGE, seeds[5])
    frame = tf.image.stateless_random_hue(frame, HUE_DELTA, seeds[6])
    return tf.clip_by_value(frame, 0.0, 255.0)


def images(uris: Sequence[str], loader: ImageLoader) -> tf.data.Dataset:
    """Decoded uint8 images at ``uris``, in order; the bytes come through ``loader``."""
    def read(uri: tf.Tensor) -> tf.Tensor:
        data = tf.py_function(lambda value: loader(value.numpy().decode()), [uri], tf.string)
        data.set_shape([])
        return data

    return (tf.data.Dataset.from_tensor_slices(list(uris))
            .map(read, num_parallel_calls=AUTOTUNE)
            .map(decode_frame, num_parallel_calls=AUTOTUNE))


def image_batches(uris: Sequence[str], labels: np.ndarray, loader: ImageLoader, preprocess: Preprocess,
                  batch_size: int, augment_seed: int | None = None, shuffle_seed: int | None = None,
                  variation: LookVariation = SAME_LOOK) -> tf.data.Dataset:
    """Batches of (frames, labels) in order, or shuffled anew every epoch with ``shuffle_seed``.

    With ``augment_seed`` (training only) every image is a new random view each time it is read, its look
    varied as ``variation`` says.
    """
    dataset = tf.data.Dataset.zip(images(uris, loader), tf.data.Dataset.from_tensor_slices(labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(uris), seed=shuffle_seed, reshuffle_each_iteration=True)
    if augment_seed is None:
        dataset = dataset.map(lambda image, label: (preprocess(image), label), num_parallel_calls=AUTOTUNE)
        return dataset.batch(batch_size).prefetch(AUTOTUNE)
    seeds = tf.data.Dataset.random(seed=augment_seed, rerandomize_each_iteration=True).batch(2)
    return (tf.data.Dataset.zip(dataset, seeds)
            .map(lambda pair, seed: (augmented_frame(pair[0], seed, preprocess, variation), pair[1]),
                 num_parallel_calls=AUTOTUNE)
            .batch(batch_size)
            .prefetch(AUTOTUNE))


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """'Balanced' weights (scikit-learn): a rare class counts as much in the loss as a frequent one."""
    present = np.unique(labels)
    missing = sorted(set(range(num_classes)) - set(present.tolist()))
    if missing:
        raise ValueError(f"class indices {missing} have no training images")
    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=labels)
    return {index: float(weight) for index, weight in enumerate(weights)}


def site_balanced_weights(labels: np.ndarray, sites: Sequence[str | None], num_classes: int,
                          balance: float = 1.0) -> np.ndarray:
    """Per-image loss weights (mean 1): every class weighs the same, and within a class each site's share is
    proportional to ``count ** (1 - balance)``.

    ``balance`` 0 gives class-balanced weights only (a site counts by its number of images); 1 gives every
    (site, class) group of a class the same weight, so ten images of a new site weigh as much as four hundred
    of the old one. ``None`` (seed and imported images) is a site like any other.
    """
    if len(sites) != len(labels):
        raise ValueError(f"{len(sites)} sites for {len(labels)} labels")
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"balance must lie in [0, 1], got {balance}")
    class_weights(labels, num_classes)  # every class needs images
    groups = Counter(zip(labels.tolist(), sites, strict=True))
    shares: dict[tuple[int, str | None], float] = {}
    for label in range(num_classes):
        counts = {group: count for group, count in groups.items() if group[0] == label}
        total = sum(count ** (1.0 - balance) for count in counts.values())
        shares.update({group: count ** (1.0 - balance) / total for group, count in counts.items()})
    per_group = {group: len(labels) / num_classes * share / groups[group] for group, share in shares.items()}
    return np.array([per_group[group] for group in zip(labels.tolist(), sites, strict=True)], dtype=np.float32)


FEW_SHOT_SHARE = 0.25  # a (site, class) group at most this share of its class's largest group ...
FEW_SHOT_MOST = 50  # ... and of at most this many images is a few-shot group
FEW_SHOT_EXTRA_VIEWS = 12  # extra augmented views of each few-shot image


def few_shot_images(labels: np.ndarray, sites: Sequence[str | None]) -> np.ndarray:
    """Indices of the images in few-shot groups: a new site's first labels of a class, beside a larger site's."""
    groups = Counter(zip(labels.tolist(), sites, strict=True))
    largest = Counter()
    for (label, _), count in groups.items():
        largest[label] = max(largest[label], count)
    few = {group for group, count in groups.items()
           if count <= FEW_SHOT_MOST and count <= FEW_SHOT_SHARE * largest[group[0]]}
    return np.array([index for index, group in enumerate(zip(labels.tolist(), sites, strict=True)) if group in few],
                    dtype=np.int64)


def few_shot_extra_views(few_shot: int, images: int) -> int:
    """Extra views per few-shot image: FEW_SHOT_EXTRA_VIEWS, but never more frames than one view of all images."""
    return 0 if few_shot == 0 else min(FEW_SHOT_EXTRA_VIEWS, images // few_shot)


def cached_view_weights(weights: np.ndarray, views: int, few: np.ndarray, extra_views: int) -> np.ndarray:
    """Loss weights of the cached views: ``views`` passes over all images, then ``extra_views`` passes over the
    images ``few``. A few-shot image's weight is shared among all its views, so extra views add variety, not say in
    the loss: each image weighs in total ``views`` times its weight, as every other image does."""
    share = np.ones_like(weights)
    share[few] = views / (views + extra_views)
    return np.concatenate([np.tile(weights * share, views), np.tile((weights * share)[few], extra_views)])
