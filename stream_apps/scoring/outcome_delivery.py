"""Outcomes sent until Kafka acknowledged every one of them, so a batch's offsets may be released after.

A passing failure (broker unreachable, a leader moving, a timeout) waits with capped backoff and sends the
unacknowledged outcomes again: their ids derive from the captured record, so a copy that did land is absorbed
by its consumers. An outcome the broker refuses for good (too large, say) is replaced by its record's dead
letter, so one record cannot stop the worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from infra.retry import Backoff, Degradation, is_transient
from schemas.events import DeadLetterReason, Event
from stream_apps.scoring.batch import Kind, Outcome, dead_letter

log = logging.getLogger(__name__)
SendEvent = Callable[[Event], Awaitable[Awaitable[object]]]  # returns the acknowledgement to wait for
WAITING_FOR = "kafka (sending outcomes)"
ACK_PATIENCE_S = 5.0  # far longer than a healthy broker takes to acknowledge a batch


async def deliver(outcomes: list[Outcome], send: SendEvent, *, degradation: Degradation | None = None,
                  max_delay_s: float = 30.0, ack_patience_s: float = ACK_PATIENCE_S) -> list[Outcome]:
    """Send every outcome and wait until each was acknowledged; returns the outcomes as they were delivered.

    The producer itself retries through a broker outage, so acknowledgements may just take long: beyond
    `ack_patience_s` the worker says that it waits for Kafka (log line, `/health/` degraded)."""
    delivered = list(outcomes)
    waiting = list(range(len(delivered)))
    backoff = Backoff(first_s=min(0.5, max_delay_s), cap_s=max_delay_s)
    while waiting:
        failures = await _send_all(send, [delivered[i].event for i in waiting], degradation, ack_patience_s)
        again: list[int] = []
        passing: BaseException | None = None
        for index, failure in zip(waiting, failures, strict=True):
            if failure is None:
                continue
            if is_transient(failure):
                passing = failure
            else:
                delivered[index] = _refused(delivered[index], failure)
            again.append(index)
        waiting = again
        if passing is not None:
            delay = backoff.next_delay()
            reason = f"{type(passing).__name__}: {passing}"[:300]
            log.warning("%d outcomes not acknowledged; sending them again in %.1f s: %s", len(waiting), delay, reason)
            if degradation is not None:
                degradation.waiting(WAITING_FOR, reason)
            await asyncio.sleep(delay)
    if degradation is not None:
        degradation.recovered(WAITING_FOR)
    return delivered


async def _send_all(send: SendEvent, events: list[Event], degradation: Degradation | None,
                    ack_patience_s: float) -> list[BaseException | None]:
    """Sent in order, then every acknowledgement awaited: per event, the failure or None."""
    acks: list[asyncio.Future | BaseException] = []
    for event in events:
        try:
            acks.append(asyncio.ensure_future(await send(event)))
        except Exception as error:
            acks.append(error)
    pending = {ack for ack in acks if isinstance(ack, asyncio.Future)}
    waited_s = 0.0
    while pending:
        _, pending = await asyncio.wait(pending, timeout=ack_patience_s)
        if pending:
            waited_s += ack_patience_s
            reason = f"{len(pending)} outcomes not acknowledged for {waited_s:.0f} s"
            log.warning("waiting for Kafka: %s", reason)
            if degradation is not None:
                degradation.waiting(WAITING_FOR, reason)
    return [ack if isinstance(ack, BaseException) else ack.exception() for ack in acks]


def _refused(outcome: Outcome, error: BaseException) -> Outcome:
    if outcome.kind is Kind.DEAD_LETTER:
        raise error  # even the dead letter was refused: nothing smaller is left to send
    log.error("Kafka refused the outcome of %s:%s:%s; dead-lettering the record: %r", outcome.record.topic,
              outcome.record.partition, outcome.record.offset, error)
    return dead_letter(outcome.record, DeadLetterReason.PROCESSING_ERROR, f"the outcome was refused: {error!r}")
