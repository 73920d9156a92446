"""Consumer lag of a worker: per assigned partition of a topic, the records between its commit and the log's end.

The log's end is asked of the broker, not taken from the last fetch: a partition that Faust paused (its buffer
full, the model stuck) would otherwise look caught up while its backlog grows. Where nothing is committed yet,
reading resumes from the fetch position, so the lag counts from there.
"""

from __future__ import annotations

import asyncio
import logging

from faust.types import TP, ConsumerT

log = logging.getLogger(__name__)
MEASURE_TIMEOUT_S = 2.0  # well inside a scrape's timeout: a broker that does not answer leaves the last figures


def lag(log_end: int, resumes_at: int) -> int:
    """Records not yet committed; never negative (a log end read before a commit that passed it)."""
    return max(0, log_end - resumes_at)


async def partition_lags(consumer: ConsumerT, topic: str) -> dict[TP, int] | None:
    """Lag per partition of `topic` assigned to `consumer`; None when Kafka cannot tell now."""
    try:
        return await asyncio.wait_for(_measure(consumer, topic), MEASURE_TIMEOUT_S)
    except Exception as error:  # the consumer not started yet, the broker away: the next scrape asks again
        log.debug("consumer lag of %s not measured: %r", topic, error)
        return None


async def _measure(consumer: ConsumerT, topic: str) -> dict[TP, int]:
    assigned = [tp for tp in consumer.assignment() if tp.topic == topic]
    log_ends = await consumer.highwaters(*assigned) if assigned else {}
    lags = {}
    for tp in assigned:
        # Faust's record of the offsets it committed (aiokafka would ask the broker for each partition).
        committed = consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        resumes_at = committed if committed is not None else await consumer.position(tp)
        if log_ends.get(tp) is not None and resumes_at is not None:
            lags[tp] = lag(log_ends[tp], resumes_at)
    return lags
