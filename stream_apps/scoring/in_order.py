"""Micro-batches scored while earlier ones are still being sent, finished strictly in arrival order.

Faust acks a `take_events` batch as soon as the agent asks for the next one. Each message here holds one
extra reference, released only after its batch was finished (outcomes acknowledged by Kafka), so no offset
becomes committable before its outcome exists; a crash in between redelivers the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faust.types import EventT

log = logging.getLogger(__name__)
FinishBatch = Callable[[Any], Awaitable[None]]
ReleaseEvent = Callable[[EventT], Awaitable[object]]


class InOrderBatches:
    """At most `ahead` batches wait behind the one being finished; `submit` blocks beyond that."""

    def __init__(self, finish: FinishBatch, release: ReleaseEvent, ahead: int = 2) -> None:
        self._finish = finish
        self._release = release
        self._queue: asyncio.Queue[tuple[Sequence[EventT], asyncio.Future]] = asyncio.Queue(maxsize=ahead)
        self._finisher: asyncio.Task | None = None

    async def __aenter__(self) -> InOrderBatches:
        self._finisher = asyncio.ensure_future(self._finish_in_order())
        self._finisher.add_done_callback(_report_stop)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Unfinished batches are dropped unacknowledged: Kafka redelivers them to whoever owns them next."""
        assert self._finisher is not None
        self._finisher.cancel()
        while not self._queue.empty():
            self._queue.get_nowait()[1].cancel()
        await asyncio.gather(self._finisher, return_exceptions=True)

    async def submit(self, events: Sequence[EventT], work: Awaitable[Any]) -> None:
        """Start `work` now; its result goes to `finish` after every batch submitted before it."""
        assert self._finisher is not None, "use `async with InOrderBatches(...)`"
        for event in events:
            event.message.incref()
        started = asyncio.ensure_future(work)
        queued = asyncio.ensure_future(self._queue.put((events, started)))
        await asyncio.wait({queued, self._finisher}, return_when=asyncio.FIRST_COMPLETED)
        if self._finisher.done():
            queued.cancel()
            started.cancel()
            self._finisher.result()  # raises what stopped the finisher (a failed send, say)
            raise RuntimeError("the batch finisher stopped")

    async def _finish_in_order(self) -> None:
        while True:
            events, started = await self._queue.get()
            await self._finish(await started)
            for event in events:
                await self._release(event)


def _report_stop(finisher: asyncio.Future) -> None:
    """Said at once: the agent learns of it only at its next batch, which may be long in coming."""
    if not finisher.cancelled() and finisher.exception() is not None:
        log.error("the batch finisher stopped; batches wait until the agent restarts", exc_info=finisher.exception())
