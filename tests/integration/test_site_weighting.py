"""A few labelled images of a new site move a training run: their (site, class) group weighs as much as the
old site's group of the same class.

The old site files 10 paper photos under "metal" (beside 30 metal photos); the new site labels 4 paper photos
"glass". Weighted by site, the new site's 4 outweigh the old site's 10 (half the glass class against a quarter of
the metal class) and unseen paper photos go to glass; weighted by class only (the old behaviour), the old site's
10 win (a quarter of the metal class against a sixth of the glass class) and they go to metal.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from schemas.dataset_manifest import ManifestRow, write_manifest
from tests.trashnet_slices import trashnet_photos
from training_job.dataset_source import load_dataset
from training_job.inference import predict_logits
from training_job.trainer import TrainConfig, config_document, train_classifier

QUICK = TrainConfig(batch_size=16, augmented_views=0, trainable_blocks=1, head_epochs=200, head_learning_rate=1e-2,
                    finetune_epochs=0)  # one head step per epoch (60 images): many quick epochs


def _rows(photos: list[Path], class_name: str, split: str, site: str | None = None) -> list[ManifestRow]:
    return [ManifestRow(str(photo), hashlib.sha256(photo.read_bytes()).hexdigest(), class_name, split, site)
            for photo in photos]


def _glass_probability(manifest: Path, config: TrainConfig, unseen: list[Path]) -> float:
    """The trained model's mean probability of glass on ``unseen``."""
    trained = train_classifier(load_dataset(manifest), config)
    logits = predict_logits(trained.model, [str(photo) for photo in unseen])
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return float(probabilities[:, trained.classes.index("glass")].mean())


def test_four_new_site_labels_outweigh_ten_old_site_labels_of_another_class(trashnet: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, [
        *_rows(trashnet_photos(trashnet, "glass", 0, 20), "glass", "train"),
        *_rows(trashnet_photos(trashnet, "metal", 0, 30), "metal", "train"),
        *_rows(trashnet_photos(trashnet, "paper", 0, 10), "metal", "train"),
        *_rows(trashnet_photos(trashnet, "paper", 10, 4), "glass", "train", site="site-b"),
        *_rows(trashnet_photos(trashnet, "paper", 14, 2), "glass", "val", site="site-b"),
        *_rows(trashnet_photos(trashnet, "glass", 20, 6), "glass", "val"),
        *_rows(trashnet_photos(trashnet, "metal", 30, 6), "metal", "val"),
    ])
    unseen = trashnet_photos(trashnet, "paper", 20, 30)

    by_site = _glass_probability(manifest, QUICK, unseen)
    by_class_only = _glass_probability(manifest, replace(QUICK, site_balance=0.0), unseen)

    assert by_site > 0.5 > by_class_only, (by_site, by_class_only)


def test_a_new_sites_few_labels_get_extra_augmented_views_and_the_old_sites_images_do_not(
        trashnet: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, [
        *_rows(trashnet_photos(trashnet, "glass", 0, 20), "glass", "train"),
        *_rows(trashnet_photos(trashnet, "metal", 0, 20), "metal", "train"),
        *_rows(trashnet_photos(trashnet, "metal", 20, 4), "metal", "train", site="site-b"),
        *_rows(trashnet_photos(trashnet, "glass", 20, 4), "glass", "val"),
        *_rows(trashnet_photos(trashnet, "metal", 24, 4), "metal", "val"),
    ])
    dataset = load_dataset(manifest)
    trained = train_classifier(dataset, replace(QUICK, augmented_views=1, head_epochs=2))
    assert trained.few_shot_views == 4 * 11  # 11 views each: no more frames than one view of all 44 images
    assert config_document(trained, dataset, None)["few_shot_views_cached"] == 44
    plain = train_classifier(dataset, replace(QUICK, augmented_views=0, head_epochs=2))
    assert plain.few_shot_views == 0  # no augmentation asked for, none added
