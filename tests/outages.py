"""Real outages for integration tests: a service of `wastex infra` stopped, then started again and healthy.

Tests that stop a service restore it even when they fail, so the tests after them find it running.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.service_outages import OUTAGES, start_again
from infra.services import Service
from infra.settings import Settings


def service(settings: Settings, name: str) -> Service:
    return OUTAGES[name](settings)


@contextmanager
def stopped(settings: Settings, name: str) -> Iterator[Service]:
    """`name` (kafka, minio or postgres) is down inside the block and up, healthy, after it."""
    target = service(settings, name)
    target.down()
    try:
        yield target
    finally:
        start_again(target)


def outage(settings: Settings, name: str, seconds: float) -> float:
    """Stop `name` for `seconds`, start it again; returns the moment (time.time()) it was healthy again."""
    with stopped(settings, name):
        time.sleep(seconds)
    return time.time()
