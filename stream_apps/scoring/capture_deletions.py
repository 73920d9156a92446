"""Deleting the images of classified captures, once no worker can read their record again.

A classified capture's image is deleted later, not at once: a batch redelivered after a rebalance must still find
its images and score them to the same outcome. It is deleted only after its record's offset is committed, and
only by image_retention, after its checks. A crash before the delay only leaves an image behind for
`wastex images gc`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from faust.types import TP

from infra.image_retention import ImageRetention
from infra.retry import Backoff, Degradation
from infra.settings import Settings
from stream_apps.scoring.batch import Outcome
from stream_apps.stream_app import CurrentGenerationConsumer

log = logging.getLogger(__name__)
COMMIT_RECHECK_S = 1.0  # how soon a classified capture whose record is not committed yet is looked at again
WHAT = "image deletions"

Pending = tuple[float, tuple[str, str], TP, int]  # (due, (bucket, key), captured partition, offset)


class CaptureDeletions:
    def __init__(self, settings: Settings, degradation: Degradation) -> None:
        self._settings = settings
        self._degradation = degradation
        self._retention = ImageRetention.of(settings)
        self._backoff = Backoff(cap_s=settings.retry_max_delay_s)
        self._pending: deque[Pending] = deque()  # in due order

    def awaiting(self) -> int:
        """Images scheduled for deletion and not deleted yet."""
        return len(self._pending)

    def schedule(self, outcomes: list[Outcome]) -> None:
        """The images of these delivered outcomes that may go, due after the delete delay."""
        due = time.monotonic() + self._settings.delete_delay_s
        self._pending.extend((due, outcome.delete_after, TP(outcome.record.topic, outcome.record.partition),
                              outcome.record.offset) for outcome in outcomes if outcome.delete_after)

    async def delete_due(self, consumer: CurrentGenerationConsumer) -> None:
        """Captures past their delay whose record is committed go to retention, off the loop. A store that is down
        keeps them pending (backoff, `/health/` degraded); any other failure only leaves images behind."""
        now, due, uncommitted = time.monotonic(), [], []
        while self._pending and self._pending[0][0] <= now:
            entry = self._pending.popleft()
            if consumer.committed_past(entry[2], entry[3]):
                due.append(entry)
            elif entry[2] in consumer.assignment():
                uncommitted.append((now + COMMIT_RECHECK_S, *entry[1:]))
            else:  # the partition moved on before its commit: the image stays for `wastex images gc`
                log.info("not deleting %s: its record was not committed before its partition moved", entry[1][1])
        self._pending.extendleft(reversed(uncommitted))
        if not due:
            return
        try:
            done = await asyncio.get_running_loop().run_in_executor(
                None, self._retention.delete_classified_captures, [entry[1] for entry in due],
                self._settings.delete_delay_s)
        except Exception:
            log.exception("deleting %d classified captures failed; they stay until `wastex images gc`", len(due))
            return
        if done.error is None:
            self._backoff.reset()
            self._degradation.recovered(WHAT)
            return
        delay = self._backoff.next_delay()
        reason = f"{type(done.error).__name__}: {done.error}"[:300]
        log.warning("%d image deletions wait %.1f s for a passing failure: %s", len(done.retry), delay, reason)
        self._degradation.waiting(WHAT, reason)
        retried = due[len(due) - len(done.retry):]  # the pass stopped there: the rest, in order
        self._pending.extendleft((now + delay, *entry[1:]) for entry in reversed(retried))
