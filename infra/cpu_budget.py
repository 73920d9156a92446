"""How many threads the model and the decode pool of one process get, from the cores it may run on.

`os.cpu_count()` counts the machine's cores; a container's cpuset or `taskset` may allow fewer, and threads beyond
them only take turns. The settings WASTEX_MODEL_THREADS and WASTEX_DECODE_THREADS override the split (0: derive).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def usable_cores() -> int:
    """The cores this process may be scheduled on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # platforms without affinity (macOS)
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadBudget:
    model: int  # the runtime's compute threads for one batch
    decode: int  # the pool that fetches and decodes the next chunk while the model runs


def thread_budget(model_threads: int = 0, decode_threads: int = 0, cores: int | None = None) -> ThreadBudget:
    """The model gets every usable core (it runs most of the time); decoding the next chunk overlaps it with a
    pool of half the cores, so the two never hold more than 1.5 threads per core between them."""
    cores = cores or usable_cores()
    return ThreadBudget(model_threads or cores, decode_threads or max(1, cores // 2))
