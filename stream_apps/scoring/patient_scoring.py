"""A batch scored until every record has an outcome of its own making, whatever passes meanwhile.

- A passing failure (MinIO unreachable, restarting or throttling, see `infra.retry.is_transient`) waits with
  capped backoff and scores the same batch again: nothing is dead-lettered, and nothing is committed since the
  batch has no outcomes yet.
- Any other failure of the batch is the model's or one record's. When the model no longer scores a blank
  image, the model is at fault: wait and try again (with the model then current, so a swap can cure it).
  Otherwise the records are scored one by one, and a record that fails on its own while the model works is
  dead-lettered on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from infra.retry import Backoff, Degradation, is_transient
from schemas.events import DeadLetterReason
from stream_apps.scoring.batch import CapturedRecord, Outcome, dead_letter

log = logging.getLogger(__name__)
M = TypeVar("M")
STORE = "minio (fetching images)"
MODEL = "model (scoring fails on a blank image)"


class PatientScorer(Generic[M]):
    def __init__(self, score: Callable[[list[CapturedRecord], M], Awaitable[list[Outcome]]],
                 current_model: Callable[[], Awaitable[M]], model_works: Callable[[M], Awaitable[bool]], *,
                 degradation: Degradation | None = None, max_delay_s: float = 30.0) -> None:
        self._score = score
        self._current_model = current_model
        self._model_works = model_works
        self._degradation = degradation
        self._max_delay_s = max_delay_s

    async def score(self, records: list[CapturedRecord]) -> list[Outcome]:
        backoff = self._backoff()
        while True:
            model = await self._current_model()
            try:
                outcomes = await self._score(records, model)
            except Exception as error:
                if is_transient(error):
                    await self._wait(backoff, STORE, error)
                    continue
                log.exception("scoring a batch of %d failed", len(records))
            else:
                self._recovered(STORE, MODEL)
                return outcomes
            if not await self._model_works(model):
                await self._wait(backoff, MODEL, RuntimeError("the model fails on a blank image"))
                continue
            self._recovered(MODEL)
            return await self._one_by_one(records)

    async def _one_by_one(self, records: list[CapturedRecord]) -> list[Outcome]:
        """Each record alone; only one that fails on a model that works is the record's fault: dead-lettered."""
        outcomes: list[Outcome] = []
        for record in records:
            backoff = self._backoff()
            while True:
                model = await self._current_model()
                try:
                    outcomes += await self._score([record], model)
                except Exception as error:
                    if is_transient(error):
                        await self._wait(backoff, STORE, error)
                        continue
                    if not await self._model_works(model):
                        await self._wait(backoff, MODEL, RuntimeError("the model fails on a blank image"))
                        continue
                    log.error("record %s:%s:%s fails on its own; dead-lettering it: %r", record.topic,
                              record.partition, record.offset, error)
                    outcomes.append(dead_letter(record, DeadLetterReason.PROCESSING_ERROR, error))
                break
        self._recovered(STORE, MODEL)
        return outcomes

    def _backoff(self) -> Backoff:
        return Backoff(first_s=min(0.5, self._max_delay_s), cap_s=self._max_delay_s)

    async def _wait(self, backoff: Backoff, what: str, error: BaseException) -> None:
        delay = backoff.next_delay()
        reason = f"{type(error).__name__}: {error}"[:300]
        log.warning("%s: waiting %.1f s, then scoring the same batch again: %s", what, delay, reason)
        if self._degradation is not None:
            self._degradation.waiting(what, reason)
        await asyncio.sleep(delay)

    def _recovered(self, *whats: str) -> None:
        if self._degradation is not None:
            for what in whats:
                self._degradation.recovered(what)
