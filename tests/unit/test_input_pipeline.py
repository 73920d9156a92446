"""The tf.data input: the artefact contract's frames, training-only augmentation, class weights."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from training_job.backbones.registry import BACKBONES
from training_job.dataset_source import ImageReader
from training_job.input_pipeline import (
    MAX_KEYSTONE,
    MAX_ROTATION,
    cached_view_weights,
    camera_view,
    class_weights,
    decode_frame,
    few_shot_extra_views,
    few_shot_images,
    frame_preprocessor,
    image_batches,
)


@pytest.fixture()
def photos(tmp_path: Path) -> list[str]:
    """Portrait photos with a bright left half, as TrashNet's 192x256."""
    uris = []
    for index in range(4):
        pixels = np.zeros((256, 192, 3), dtype=np.uint8)
        pixels[:, :96] = 200 + 10 * index
        pixels[:, 96:, 2] = 40
        path = tmp_path / f"{index}.png"
        Image.fromarray(pixels).save(path)
        uris.append(str(path))
    return uris


def collect(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    frames, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(frames), np.concatenate(labels)


def test_frames_follow_the_backbone_preprocessing(photos: list[str]) -> None:
    image = decode_frame(tf.io.read_file(photos[0]))
    assert image.dtype == tf.uint8 and tuple(image.shape) == (256, 192, 3)
    ours = frame_preprocessor(224)(image)
    np.testing.assert_array_equal(ours.numpy(), BACKBONES["efficientnet_lite0"].preprocess(image).numpy())
    # The full frame, no crop: the bright half stays the left half.
    assert ours.dtype == tf.float32 and ours.shape == (224, 224, 3)
    assert ours[:, :100].numpy().mean() > 150 and ours[:, 124:, 0].numpy().max() < 1


def test_plain_batches_keep_order_and_labels(photos: list[str]) -> None:
    labels = np.array([0, 1, 2, 1])
    frames, got = collect(image_batches(photos, labels, ImageReader(), frame_preprocessor(64), batch_size=3))
    np.testing.assert_array_equal(got, labels)
    assert frames.shape == (4, 64, 64, 3)
    np.testing.assert_allclose(frames[:, :, :20, 0].mean(axis=(1, 2)), [200, 210, 220, 230], atol=1)


def test_augmentation_makes_new_seeded_views_within_range(photos: list[str]) -> None:
    labels = np.arange(4)
    preprocess = frame_preprocessor(64)
    plain, _ = collect(image_batches(photos, labels, ImageReader(), preprocess, 4))
    first, first_labels = collect(image_batches(photos, labels, ImageReader(), preprocess, 4, augment_seed=7))
    again, _ = collect(image_batches(photos, labels, ImageReader(), preprocess, 4, augment_seed=7))
    other, _ = collect(image_batches(photos, labels, ImageReader(), preprocess, 4, augment_seed=8))
    np.testing.assert_array_equal(first_labels, labels)
    assert first.shape == plain.shape and first.min() >= 0.0 and first.max() <= 255.0
    assert np.abs(first - plain).mean() > 5  # the views really differ from the plain frames
    np.testing.assert_allclose(first, again, atol=1e-3)  # and the same seed gives the same views
    assert np.abs(first - other).mean() > 5


def test_shuffling_reorders_images_with_their_labels(photos: list[str]) -> None:
    labels = np.arange(4)
    frames, got = collect(image_batches(photos, labels, ImageReader(), frame_preprocessor(32), 4, shuffle_seed=3))
    assert sorted(got.tolist()) == [0, 1, 2, 3]
    np.testing.assert_allclose(frames[:, :, :10, 0].mean(axis=(1, 2)), 200 + 10 * got, atol=1)


def test_undecodable_bytes_fail_the_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not a picture")
    with pytest.raises(tf.errors.InvalidArgumentError):
        collect(image_batches([str(path)], np.array([0]), ImageReader(), frame_preprocessor(32), 1))


def test_rare_classes_weigh_more() -> None:
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    weights = class_weights(labels, 3)
    assert weights[2] > weights[1] > weights[0]
    # "Balanced": every class contributes the same total weight.
    totals = [weights[index] * count for index, count in enumerate((60, 30, 10))]
    assert totals == pytest.approx([100 / 3] * 3)
    with pytest.raises(ValueError, match=r"\[3\] have no training images"):
        class_weights(labels, 4)


def test_a_gif_decodes_to_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 10), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    image = decode_frame(tf.constant(buffer.getvalue())).numpy()
    assert image.shape == (10, 20, 3) and image[..., 0].mean() > 200


def test_keystone_narrows_or_widens_the_top_edge_and_keeps_the_bottom_edge() -> None:
    size = 64
    ramp = tf.tile(tf.range(size, dtype=tf.float32)[tf.newaxis, :, tf.newaxis], [size, 1, 3])  # pixel = its column
    shifts = []
    for seed in range(12):
        view = camera_view(ramp, tf.constant([seed, 5], tf.int64), max_rotation=0.0).numpy()[..., 0]
        assert view.shape == (size, size)
        np.testing.assert_allclose(view[-1, 8:-8], np.arange(8, size - 8), atol=0.6)
        assert abs(view[0, size // 2] - size / 2) < 0.6  # the picture's centre line stays upright
        shifts.append(view[0, size // 4] - size / 4)  # a quarter across the top: moved by half the tilt
    assert max(map(abs, shifts)) <= MAX_KEYSTONE * size / 2 + 0.6
    assert min(shifts) < -1 and max(shifts) > 1  # both directions of slant


def test_a_turned_camera_rotates_the_picture_about_its_centre_within_the_range() -> None:
    size = 65
    picture = np.zeros((size, size, 3), np.float32)
    picture[32, 32:60] = 255.0  # a bright bar from the centre to the right
    turns = []
    for seed in range(8):
        view = camera_view(tf.constant(picture), tf.constant([seed, 6], tf.int64), max_keystone=0.0).numpy()[..., 0]
        assert view[32, 32] > 100  # the centre stays in place
        rows, columns = np.nonzero(view > 100)
        angle = np.degrees(np.arctan2(rows - 32, columns - 32)[columns + np.abs(rows - 32) > 40])
        assert np.all(np.abs(angle) <= MAX_ROTATION * 360 + 3)
        turns.append(float(np.median(angle)))
    assert max(map(abs, turns)) > 5  # the picture does turn


def test_a_new_sites_first_labels_are_few_shot_and_a_rare_class_of_one_site_is_not() -> None:
    labels = np.array([0] * 200 + [0] * 10 + [1] * 30 + [1] * 25)
    sites = [None] * 200 + ["site-b"] * 10 + [None] * 30 + ["site-b"] * 25
    few = few_shot_images(labels, sites)
    np.testing.assert_array_equal(few, np.arange(200, 210))  # class 1's 25 are not small beside its 30
    assert few_shot_images(np.array([0] * 5 + [1] * 100), [None] * 105).size == 0  # one site: rare, not few-shot


def test_few_shot_images_get_extra_views_but_never_more_frames_than_one_view_of_all() -> None:
    assert few_shot_extra_views(0, 1000) == 0
    assert few_shot_extra_views(60, 1600) == 12
    assert few_shot_extra_views(300, 1200) == 4


def test_extra_views_share_a_few_shot_images_weight_instead_of_adding_to_it() -> None:
    weights = np.array([1.0, 1.0, 8.0, 8.0], np.float32)
    few = np.array([2, 3])
    view_weights = cached_view_weights(weights, 3, few, 9)
    assert view_weights.shape == (3 * 4 + 9 * 2,)
    totals = np.zeros(4)
    np.add.at(totals, np.concatenate([np.tile(np.arange(4), 3), np.tile(few, 9)]), view_weights)
    np.testing.assert_allclose(totals, 3 * weights)
    np.testing.assert_array_equal(cached_view_weights(weights, 3, np.array([], np.int64), 0), np.tile(weights, 3))
