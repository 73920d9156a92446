"""Real waste photos for benchmarks: TrashNet, read in place by path (never copied into the repository)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import click

from producers.image_sources import folder_images

DATASET_ENV = "WASTEX_TRASHNET_DIR"


def trashnet_dir(option: Path | None) -> Path:
    """The folder from `--dataset`, else from WASTEX_TRASHNET_DIR; a usage error when neither names one."""
    folder = option or (Path(os.environ[DATASET_ENV]) if os.environ.get(DATASET_ENV) else None)
    if folder is None:
        raise click.UsageError(f"give --dataset DIR or set {DATASET_ENV} to the TrashNet folder")
    if not folder.is_dir():
        raise click.UsageError(f"{folder} is not a directory")
    return folder


def sample_photos(folder: Path, count: int) -> list[bytes]:
    """`count` distinct photos taken from every class folder in turn, so each class is represented."""
    per_class = [folder_images(sub) for sub in sorted(p for p in folder.iterdir() if p.is_dir())]
    interleaved = [path for group in itertools.zip_longest(*per_class) for path in group if path is not None]
    if len(interleaved) < count:
        raise click.UsageError(f"{folder} has {len(interleaved)} photos, the benchmark needs {count}")
    return [path.read_bytes() for path in interleaved[:count]]


def unseen_photos(folder: Path, count: int) -> list[bytes]:
    """`count` photos of the folder's val and test splits (the splits a training run on it holds out), repeated in
    turn when there are fewer: what a model trained on the folder scores as it scores a site's new photos."""
    from training_job.dataset_source import ImageReader, load_dataset

    dataset = load_dataset(folder)
    rows = sorted(dataset.split("val") + dataset.split("test"), key=lambda row: row.sha256)
    if not rows:
        raise click.UsageError(f"{folder} has no val or test photos")
    read = ImageReader()
    held_out = [read(row.image) for row in rows]
    return [held_out[index % len(held_out)] for index in range(count)]
