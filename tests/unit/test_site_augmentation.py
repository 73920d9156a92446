"""Augmented views on generated, textured floors and under other light; the object itself is kept."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from training_job.site_augmentation import (
    LookVariation,
    floor_texture,
    generated_floor,
    object_shadow,
    plain_background,
    vary_look,
)

SIZE = 112


def board_photo() -> tf.Tensor:
    """A white board (slightly uneven) with a dark-red object in the middle; a white label inside the object."""
    rng = np.random.default_rng(0)
    pixels = np.full((SIZE, SIZE, 3), 235.0) + rng.normal(0, 3, (SIZE, SIZE, 3))
    pixels[30:82, 30:82] = (150, 30, 30)
    pixels[48:64, 48:64] = 240  # white, but enclosed by the object: not background
    return tf.constant(pixels.clip(0, 255), tf.float32)


def test_the_plain_background_is_the_board_around_the_object_not_white_parts_inside_it() -> None:
    mask = plain_background(board_photo()).numpy()[..., 0]
    assert mask.shape == (SIZE, SIZE)
    assert mask[:20].mean() > 0.95 and mask[:, -20:].mean() > 0.95
    assert mask[36:76, 36:76].max() < 0.05  # the object, its white label included


def test_a_view_on_a_generated_floor_keeps_the_object_and_replaces_the_board() -> None:
    photo = board_photo()
    variation = LookVariation(background_share=1.0, white_balance=0.0)
    view = vary_look(photo, tf.constant([1, 2], tf.int64), variation).numpy()
    np.testing.assert_allclose(view[36:76, 36:76], photo.numpy()[36:76, 36:76], atol=1.0)
    assert np.abs(view[:15] - 235).mean() > 15  # the board is now a floor


def test_views_are_seeded() -> None:
    photo, variation = board_photo(), LookVariation(background_share=1.0, white_balance=0.2)
    first = vary_look(photo, tf.constant([3, 4], tf.int64), variation).numpy()
    np.testing.assert_array_equal(first, vary_look(photo, tf.constant([3, 4], tf.int64), variation).numpy())
    assert not np.array_equal(first, vary_look(photo, tf.constant([3, 5], tf.int64), variation).numpy())


def test_white_balance_scales_each_channel_within_its_range() -> None:
    photo = tf.fill((8, 8, 3), 100.0)
    for seed in range(10):
        view = vary_look(photo, tf.constant([seed, 0], tf.int64), LookVariation(0.0, 0.2)).numpy()
        gains = view[0, 0] / 100.0
        assert np.all((gains >= 0.8 - 1e-5) & (gains <= 1.2 + 1e-5)) and np.ptp(gains) > 0
        assert np.all(view == view[0, 0])  # one gain per channel over the whole frame


def test_colour_temperature_moves_red_and_blue_in_opposite_directions_and_keeps_green() -> None:
    photo = tf.fill((8, 8, 3), 100.0)
    warmths = []
    for seed in range(20):
        view = vary_look(photo, tf.constant([seed, 0], tf.int64), LookVariation(0.0, 0.0, 0.3)).numpy()
        red, green, blue = view[0, 0] / 100.0
        assert green == pytest.approx(1.0) and red - 1.0 == pytest.approx(1.0 - blue, abs=1e-5)
        warmths.append(red - 1.0)
    assert max(map(abs, warmths)) <= 0.3 + 1e-5
    assert min(warmths) < -0.05 and max(warmths) > 0.05  # both warmer and cooler halls are shown


def test_floors_are_textured_and_within_range() -> None:
    floor = generated_floor(tf.constant([64, 48]), tf.constant([7, 7], tf.int64)).numpy()
    assert floor.shape == (64, 48, 3) and floor.min() >= 0 and floor.max() <= 255
    assert floor.std() > 3  # not a flat colour


def test_floors_are_busy_at_the_scale_of_a_few_pixels_like_gravel_or_brick() -> None:
    fine_detail = []
    for seed in range(8):
        texture = floor_texture(tf.constant([96, 96]), tf.constant([seed, 1], tf.int64))
        smooth = tf.nn.avg_pool2d(texture[tf.newaxis], 7, 1, "SAME")[0]
        fine_detail.append(float(tf.math.reduce_std(texture - smooth)))
    assert np.median(fine_detail) > 8  # grey levels change within a few pixels, not only across the frame


def test_some_floors_are_tiled_with_dark_joints_at_a_regular_period() -> None:
    tiled = 0
    for seed in range(20):
        texture = floor_texture(tf.constant([96, 96]), tf.constant([seed, 2], tf.int64)).numpy()[..., 0]
        rows = texture.mean(axis=1)  # a joint runs along a whole course, so its row's mean stands out
        tiled += int(rows.min() < np.median(rows) - 20)
    assert 0 < tiled < 20


def test_the_object_casts_a_shadow_next_to_it_and_none_far_away() -> None:
    mask = plain_background(board_photo())
    for seed in range(5):
        shadow = object_shadow(mask, tf.constant([seed, 3], tf.int64)).numpy()[..., 0]
        assert shadow.min() >= 0 and shadow.max() <= 0.45 + 1e-6
        assert shadow[:10, :10].max() < 1e-3  # the far corner of the board
        if shadow.max() > 0.05:
            assert shadow[84, 60] > 0.5 * shadow.max()  # just past the object's lower edge, away from the light
