"""`wastex bench ...`: each benchmark module is imported only when it runs."""

from __future__ import annotations

import click

from wastex.lazy_group import LazyGroup

# benchmark name -> "module:attribute" of its click command
BENCHMARKS: dict[str, str] = {
    "scoring": "bench.scoring:scoring",
    "training": "bench.training:training",
    "versions": "bench.versions:versions",
    "swap": "bench.swap:swap",
    "faults": "bench.faults:faults",
    "newsite": "bench.newsite:newsite",
}


@click.group(cls=LazyGroup, commands=BENCHMARKS)
def bench() -> None:
    """Benchmarks measured against a baseline in the same run (see README, Benchmarks)."""
