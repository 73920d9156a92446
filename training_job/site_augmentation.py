"""Augmentation that varies what differs between sites: the floor behind the object and the light.

TrashNet-like photos show one object on a bright plain board; another site shows it on its own floor under its
own light. A view may get its plain background (the bright, low-colour region connected to the frame's border,
so a white object in the middle keeps its pixels) replaced by a procedurally generated, textured floor on which the
object casts a soft shadow, a colour-temperature shift (red and blue gains moving in opposite directions, as
between daylight, tungsten and sodium halls) and a white-balance shift (a random gain per channel). Floors are
made from seeded noise, never from photographs, so no benchmark's floor can leak into training. Everything is
stateless and seeded: the same seed gives the same view.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

MASK_SIZE = 56  # the background is found at this resolution: cheap, and fine enough for a soft edge
MAX_CHROMA = 0.14 * 255  # max - min channel of a plain (grey or white) pixel
RELATIVE_BRIGHTNESS = 0.72  # a background pixel is at least this share of the frame's bright end
MASK_COVER = (0.15, 0.95)  # a found background outside this share of the frame is not trusted
NOISE_SCALES = ((4, 1.0), (16, 0.6), (56, 0.35))  # (grid size, weight) of the floor's noise octaves
# Real floors are busy at the object's own scale (gravel, brick, grass, worn concrete), not only smooth: each
# generated floor adds fine grain, pebble-like blobs and, in some, the joints of tiles or bricks.
GRAIN_AMPLITUDE = 30.0
PEBBLE_GRID, PEBBLE_AMPLITUDE = 40, 40.0
TILE_SHARE, TILE_PERIOD, TILE_DARKNESS = 0.35, (12.0, 48.0), 60.0
SHADOW_DARKNESS, SHADOW_OFFSET = 0.45, 6  # the object's soft shadow on the floor, as under one main light


@dataclass(frozen=True)
class LookVariation:
    """How augmented views vary the look of a site; zeros turn a variation off."""

    background_share: float = 0.5  # share of augmented views whose plain background becomes a generated floor
    white_balance: float = 0.15  # each channel's gain is drawn from [1 - this, 1 + this]
    colour_temperature: float = 0.0  # t from [-this, this]; gains (1 + t, 1, 1 - t): warm light for t > 0


SAME_LOOK = LookVariation(0.0, 0.0, 0.0)


def plain_background(frame: tf.Tensor) -> tf.Tensor:
    """(h, w, 1) in [0, 1]: the bright plain region of ``frame`` (float RGB in [0, 255]) reachable from its border."""
    size = tf.shape(frame)[:2]
    small = tf.image.resize(frame[tf.newaxis], (MASK_SIZE, MASK_SIZE), method="area")[0]
    brightness = tf.reduce_mean(small, axis=-1)
    chroma = tf.reduce_max(small, axis=-1) - tf.reduce_min(small, axis=-1)
    bright_end = tf.sort(tf.reshape(brightness, [-1]))[int(0.95 * MASK_SIZE * MASK_SIZE)]
    plain = tf.cast((chroma < MAX_CHROMA) & (brightness > RELATIVE_BRIGHTNESS * bright_end), tf.float32)
    border = tf.pad(tf.zeros((MASK_SIZE - 2, MASK_SIZE - 2)), [[1, 1], [1, 1]], constant_values=1.0)
    reached = (plain * border)[tf.newaxis, ..., tf.newaxis]
    plain = plain[tf.newaxis, ..., tf.newaxis]
    for _ in range(MASK_SIZE // 2):  # grow from the border through plain pixels only (a geodesic dilation)
        reached = tf.nn.max_pool2d(reached, 3, 1, "SAME") * plain
    soft = tf.nn.avg_pool2d(reached, 3, 1, "SAME")
    return tf.image.resize(soft, size, method="bilinear")[0]


def floor_texture(size: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A (h, w, 1) zero-centred texture: fine grain, pebble-like blobs and maybe tile joints, each of a random
    strength."""
    seeds = tf.random.experimental.stateless_split(seed, 6)
    strengths = tf.random.stateless_uniform([2], seeds[0], 0.0, 1.0)
    grain = GRAIN_AMPLITUDE * strengths[0] * tf.random.stateless_normal(tf.concat([size, [1]], 0), seeds[1])
    blobs = tf.image.resize(tf.random.stateless_normal((1, PEBBLE_GRID, PEBBLE_GRID, 1), seeds[2]), size)[0]
    pebbles = PEBBLE_AMPLITUDE * strengths[1] * tf.tanh(3.0 * blobs)
    period = tf.random.stateless_uniform([], seeds[3], *TILE_PERIOD)
    rows = tf.range(tf.cast(size[0], tf.float32))[:, tf.newaxis, tf.newaxis]
    columns = tf.range(tf.cast(size[1], tf.float32))[tf.newaxis, :, tf.newaxis]
    course = tf.math.floor(rows / period)
    shifted = columns + 0.5 * period * tf.math.floormod(course, 2.0)  # bricks: every other course half a brick on
    joint = tf.cast((tf.math.floormod(rows, period) < 2.0) | (tf.math.floormod(shifted, 2.0 * period) < 2.0),
                    tf.float32)
    tiled = tf.cast(tf.random.stateless_uniform([], seeds[4]) < TILE_SHARE, tf.float32)
    return grain + pebbles - TILE_DARKNESS * tiled * joint


def generated_floor(size: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A (h, w, 3) floor in [0, 255]: a tinted grey level, octaves of smooth noise, a texture and a light
    gradient."""
    seeds = tf.random.experimental.stateless_split(seed, len(NOISE_SCALES) + 5)
    level = tf.random.stateless_uniform([], seeds[0], 50.0, 190.0)
    tint = tf.random.stateless_uniform([3], seeds[1], -25.0, 25.0)
    amplitude = tf.random.stateless_uniform([], seeds[2], 8.0, 40.0)
    floor = tf.zeros(tf.concat([size, [1]], 0))
    for octave, (grid, weight) in enumerate(NOISE_SCALES):
        noise = tf.random.stateless_normal((1, grid, grid, 1), seeds[4 + octave])
        floor += weight * tf.image.resize(noise, size, method="bilinear")[0]
    direction = tf.random.stateless_uniform([2], seeds[3], -1.0, 1.0)
    rows = tf.linspace(-1.0, 1.0, size[0])[:, tf.newaxis, tf.newaxis]
    columns = tf.linspace(-1.0, 1.0, size[1])[tf.newaxis, :, tf.newaxis]
    gradient = 20.0 * (direction[0] * rows + direction[1] * columns)
    texture = floor_texture(size, seeds[4 + len(NOISE_SCALES)])
    return tf.clip_by_value(level + tint + amplitude * floor + texture + gradient, 0.0, 255.0)


def object_shadow(mask: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """(h, w, 1) in [0, 1]: how much the floor darkens around the object (the complement of ``mask``), blurred and
    offset away from the light."""
    darkness = tf.random.stateless_uniform([], seed, 0.0, SHADOW_DARKNESS)
    cast = tf.roll(1.0 - mask, shift=[SHADOW_OFFSET, SHADOW_OFFSET], axis=[0, 1])
    return darkness * tf.nn.avg_pool2d(cast[tf.newaxis], 9, 1, "SAME")[0]


def on_generated_floor(frame: tf.Tensor, floor_seed: tf.Tensor, shadow_seed: tf.Tensor) -> tf.Tensor:
    """``frame`` with its plain background replaced by a generated floor, or unchanged when the background found
    covers too little or too much of it to be trusted."""
    mask = plain_background(frame)
    cover = tf.reduce_mean(mask)
    floor = generated_floor(tf.shape(frame)[:2], floor_seed) * (1.0 - object_shadow(mask, shadow_seed))
    trusted = (cover > MASK_COVER[0]) & (cover < MASK_COVER[1])
    return tf.where(trusted, mask * floor + (1.0 - mask) * frame, frame)


def vary_look(frame: tf.Tensor, seed: tf.Tensor, variation: LookVariation) -> tf.Tensor:
    """``frame`` (float RGB in [0, 255]) maybe on a generated floor, then under a random colour temperature and
    with a random per-channel gain."""
    seeds = tf.random.experimental.stateless_split(seed, 5)
    if variation.background_share > 0:
        # A branch, not a blend of both: the mask and floor cost as much as the rest of a view, so only views
        # that get a floor pay for them.
        frame = tf.cond(tf.random.stateless_uniform([], seeds[0]) < variation.background_share,
                        lambda: on_generated_floor(frame, seeds[1], seeds[4]), lambda: frame)
    if variation.colour_temperature > 0:
        warmth = tf.random.stateless_uniform([], seeds[3], -variation.colour_temperature,
                                             variation.colour_temperature)
        frame = frame * tf.stack([1.0 + warmth, 1.0, 1.0 - warmth])
    if variation.white_balance > 0:
        gain = tf.random.stateless_uniform([3], seeds[2], 1.0 - variation.white_balance, 1.0 + variation.white_balance)
        frame = frame * gain
    return tf.clip_by_value(frame, 0.0, 255.0)
