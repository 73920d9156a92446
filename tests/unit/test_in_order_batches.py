"""Batches scored concurrently are finished in submission order, and acked only after they were finished."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from stream_apps.scoring.in_order import InOrderBatches


@dataclass
class FakeMessage:
    refcount: int = 1  # Faust holds one reference until the take buffer acks it

    def incref(self) -> None:
        self.refcount += 1


@dataclass
class FakeEvent:
    name: str
    message: FakeMessage = field(default_factory=FakeMessage)


class Journal:
    def __init__(self) -> None:
        self.finished: list[str] = []
        self.released: list[str] = []
        self.finished_before_release: list[bool] = []

    async def finish(self, result: str) -> None:
        await asyncio.sleep(0)
        self.finished.append(result)

    async def release(self, event: FakeEvent) -> None:
        self.finished_before_release.append(event.name in self.finished)
        event.message.refcount -= 1
        self.released.append(event.name)


async def _slow(result: str, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return result


@pytest.mark.unit
def test_a_slow_first_batch_still_finishes_first_and_acks_only_after_finishing() -> None:
    journal = Journal()
    events = {name: FakeEvent(name) for name in "abc"}

    async def run() -> None:
        async with InOrderBatches(journal.finish, journal.release, ahead=2) as batches:
            await batches.submit([events["a"]], _slow("a", 0.05))
            await batches.submit([events["b"]], _slow("b", 0.0))
            await batches.submit([events["c"]], _slow("c", 0.01))
            # Faust's own ack of the take buffer: the extra reference keeps the message uncommittable.
            for event in events.values():
                event.message.refcount -= 1
            assert all(event.message.refcount == 1 for event in events.values())
            while len(journal.released) < 3:
                await asyncio.sleep(0.01)

    asyncio.run(run())
    assert journal.finished == ["a", "b", "c"]
    assert journal.released == ["a", "b", "c"]
    assert all(journal.finished_before_release)
    assert all(event.message.refcount == 0 for event in events.values())


@pytest.mark.unit
def test_submit_waits_when_too_many_batches_are_ahead() -> None:
    async def run() -> bool:
        release_first = asyncio.Event()
        journal = Journal()

        async def first() -> str:
            await release_first.wait()
            return "first"

        async with InOrderBatches(journal.finish, journal.release, ahead=1) as batches:
            await batches.submit([FakeEvent("1")], first())
            await batches.submit([FakeEvent("2")], _slow("second", 0))  # waits in the queue
            third = asyncio.ensure_future(batches.submit([FakeEvent("3")], _slow("third", 0)))
            await asyncio.sleep(0.05)
            blocked = not third.done()
            release_first.set()
            await asyncio.wait_for(third, 1)
            while len(journal.finished) < 3:
                await asyncio.sleep(0.01)
            return blocked

    assert asyncio.run(run())


@pytest.mark.unit
def test_a_failed_finish_stops_the_agent_and_leaves_the_batch_unacked() -> None:
    released: list[str] = []

    async def failing_finish(result: str) -> None:
        raise ConnectionError("broker gone")

    async def release(event: FakeEvent) -> None:
        released.append(event.name)

    async def run() -> None:
        async with InOrderBatches(failing_finish, release, ahead=1) as batches:
            await batches.submit([FakeEvent("a")], _slow("a", 0))
            await asyncio.sleep(0.01)
            await batches.submit([FakeEvent("b")], _slow("b", 0))

    with pytest.raises(ConnectionError, match="broker gone"):
        asyncio.run(run())
    assert released == []
