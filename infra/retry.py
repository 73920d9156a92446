"""Passing failures against bad records: the one place that tells them apart, and the backoff that waits them out.

A passing failure (MinIO, PostgreSQL or Kafka unreachable, restarting or throttling) means: wait with capped
exponential backoff and try the same work again, never dead-letter, skip or commit past it. Anything else is
the record's own fault and is handled once, on its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# S3 error codes a healthy request can meet while MinIO restarts or sheds load.
_TRANSIENT_S3_CODES = frozenset({
    "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed",
    "XMinioServerNotInitialized", "XMinioStorageFull", "OperationAborted", "XMinioReadQuorum", "XMinioWriteQuorum",
})


def is_transient(error: BaseException) -> bool:
    """True when `error` says a store was unreachable or busy, so the same work may succeed later."""
    from aiokafka.errors import KafkaError as AioKafkaError
    from confluent_kafka import KafkaError, KafkaException
    from minio.error import S3Error, ServerError
    from sqlalchemy import exc as sa_exc
    from urllib3.exceptions import HTTPError as Urllib3Error

    from infra.publisher import PublishError

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:  # a wrapper may hide the cause
        seen.add(id(current))
        if isinstance(current, S3Error):
            return current.code in _TRANSIENT_S3_CODES
        if isinstance(current, ServerError | Urllib3Error | PublishError | ConnectionError | TimeoutError):
            return True
        if isinstance(current, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.DisconnectionError
                      | sa_exc.TimeoutError):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, KafkaException):
            inner = current.args[0] if current.args else None
            return isinstance(inner, KafkaError) and (inner.retriable() or inner.code() in _TRANSIENT_KAFKA_CODES)
        if isinstance(current, AioKafkaError):
            return bool(getattr(current, "retriable", False)) or type(current).__name__ in _TRANSIENT_AIOKAFKA
        if type(current).__module__.startswith("psycopg2") and type(current).__name__ in {"OperationalError",
                                                                                            "InterfaceError"}:
            return True
        current = current.__cause__ or current.__context__
    return False


def _kafka_codes() -> frozenset[int]:
    from confluent_kafka import KafkaError

    return frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._MSG_TIMED_OUT,
                      KafkaError._TIMED_OUT, KafkaError._RESOLVE, KafkaError._WAIT_COORD, KafkaError.NOT_COORDINATOR,
                      KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                      KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION})


_TRANSIENT_KAFKA_CODES = _kafka_codes()
_TRANSIENT_AIOKAFKA = frozenset({"KafkaTimeoutError", "KafkaConnectionError", "NodeNotReadyError",
                                 "RequestTimedOutError", "NoBrokersAvailable", "NotLeaderForPartitionError",
                                 "LeaderNotAvailableError", "KafkaUnavailableError"})


@dataclass
class Backoff:
    """Capped exponential delays: first, first*2, ... up to `cap` seconds."""

    first_s: float = 0.5
    cap_s: float = 30.0
    _next: float = field(default=0.0, init=False)

    def next_delay(self) -> float:
        self._next = self.first_s if self._next == 0 else min(self.cap_s, self._next * 2)
        return self._next

    def reset(self) -> None:
        self._next = 0.0


class Degradation:
    """What a component waits for right now, for its `/health/` (`degraded` and why) and its log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[str, float]] = {}

    def waiting(self, what: str, reason: str) -> None:
        with self._lock:
            since = self._waiting.get(what, (reason, time.time()))[1]
            self._waiting[what] = (reason, since)

    def recovered(self, what: str) -> None:
        with self._lock:
            self._waiting.pop(what, None)

    def report(self) -> dict[str, object]:
        """{"status": "ok"} or {"status": "degraded", "waiting": [{"for", "reason", "since_s"}, ...]}."""
        with self._lock:
            items = sorted(self._waiting.items())
        if not items:
            return {"status": "ok"}
        now = time.time()
        return {"status": "degraded", "waiting": [{"for": what, "reason": reason, "since_s": round(now - since, 1)}
                                                  for what, (reason, since) in items]}


def _wait_for(error: Exception, backoff: Backoff, what: str, degradation: Degradation | None) -> float:
    """The delay before the next try, after a passing failure (logged and reported); re-raises anything else."""
    if not is_transient(error):
        raise error
    delay = backoff.next_delay()
    reason = f"{type(error).__name__}: {error}"[:300]
    log.warning("%s: waiting %.1f s for a passing failure: %s", what, delay, reason)
    if degradation is not None:
        degradation.waiting(what, reason)
    return delay


def retry_transient(work: Callable[[], T], *, what: str, degradation: Degradation | None = None,
                    stop: threading.Event | None = None, backoff: Backoff | None = None) -> T:
    """Run `work` until it succeeds; a passing failure waits and retries, anything else is raised.

    `what` names the work in the log line and in `/health/`. Raises InterruptedError if `stop` is set while waiting.
    """
    backoff = backoff or Backoff()
    while True:
        try:
            result = work()
        except Exception as error:
            delay = _wait_for(error, backoff, what, degradation)
            if stop is not None and stop.wait(delay):
                raise InterruptedError(f"{what}: stopped while waiting") from error
            if stop is None:
                time.sleep(delay)
            continue
        if degradation is not None:
            degradation.recovered(what)
        return result


async def retry_transient_async(work: Callable[[], Awaitable[T]], *, what: str,
                                degradation: Degradation | None = None, backoff: Backoff | None = None) -> T:
    """`retry_transient` for coroutines: `work` is called again (a new awaitable) after each passing failure."""
    backoff = backoff or Backoff()
    while True:
        try:
            result = await work()
        except Exception as error:
            await asyncio.sleep(_wait_for(error, backoff, what, degradation))
            continue
        if degradation is not None:
            degradation.recovered(what)
        return result
