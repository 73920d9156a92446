"""`wastex`: the command line of every deployable unit."""

from __future__ import annotations

import os

import click

from wastex.lazy_group import LazyGroup

# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) buries the command's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# sub-command -> "module:attribute" of a click command owned by the unit that implements it
COMMANDS: dict[str, str] = {
    "infra": "infra.cli:infra",
    "produce": "producers.cli:produce",
    "watch": "producers.watch_folder:watch",
    "ingest": "producers.cli:ingest",
    "model": "training_job.cli:model",
    "worker": "stream_apps.cli:worker",
    "counts": "stream_apps.cli:counts",
    "deadletters": "stream_apps.dead_letters.cli:deadletters",
    "train": "training_job.cli:train",
    "evaluate": "training_job.cli:evaluate",
    "ood-photos": "training_job.ood_photos:ood_photos",
    "bench": "bench.cli:bench",
    "ui": "review_ui.cli:ui",
    "dataset": "stream_apps.builder.cli:dataset",
    "images": "infra.images_cli:images",
    "demo": "wastex.demo:demo",
    "trainer": "training_job.trainer_cli:trainer",
}


@click.group(cls=LazyGroup, commands=COMMANDS)
def main() -> None:
    """WasteX Stream: event-driven waste classification."""
