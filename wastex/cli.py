"""`wastex`: sub-commands are imported only when used, so `wastex infra status` never loads TensorFlow."""

from __future__ import annotations

import importlib
import os

import click

# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) buries the command's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# sub-command -> "module:attribute" of a click command owned by the unit that implements it
COMMANDS: dict[str, str] = {
    "infra": "infra.cli:infra",
    "produce": "producers.cli:produce",
    "watch": "producers.watch_folder:watch",
    "ingest": "producers.http_ingest:ingest",
    "model": "training_job.cli:model",
    "worker": "stream_apps.cli:worker",
    "counts": "stream_apps.cli:counts",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attribute = target.split(":")
        return getattr(importlib.import_module(module), attribute)


@click.group(cls=LazyGroup)
def main() -> None:
    """WasteX Stream: event-driven waste classification."""
