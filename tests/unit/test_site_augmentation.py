"""Augmented views on generated floors and under other white balances; the object itself is kept."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from training_job.site_augmentation import LookVariation, generated_floor, plain_background, vary_look

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


def test_floors_are_textured_and_within_range() -> None:
    floor = generated_floor(tf.constant([64, 48]), tf.constant([7, 7], tf.int64)).numpy()
    assert floor.shape == (64, 48, 3) and floor.min() >= 0 and floor.max() <= 255
    assert floor.std() > 3  # not a flat colour
