"""Scoring one micro-batch with decode and inference overlapped, off the event loop.

The batch is cut into chunks: while the model thread runs chunk i, the I/O pool fetches and decodes
chunk i+1. The model is only ever touched from its own single thread, which also times it: the batch's size and
model time go to the worker's metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from stream_apps.scoring.active_model import ActiveModel
from stream_apps.scoring.batch import BatchScorer, CapturedRecord, Outcome, PreparedBatch, infer
from stream_apps.scoring.worker_metrics import UNRECORDED, ScoringMetrics

log = logging.getLogger(__name__)


class ScoringPipeline:
    def __init__(self, scorer: BatchScorer, decode_threads: int = 1, chunk_size: int = 8,
                 metrics: ScoringMetrics = UNRECORDED) -> None:
        self.scorer = scorer
        self.chunk_size = chunk_size
        self._metrics = metrics
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        self._io = ThreadPoolExecutor(decode_threads, thread_name_prefix="decode")

    async def score(self, records: list[CapturedRecord], model: ActiveModel) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        chunks = [records[i:i + self.chunk_size] for i in range(0, len(records), self.chunk_size)]

        def prepare(chunk: list[CapturedRecord]):
            return self.scorer.prepare(chunk, model.input_size, self._io)

        outcomes: list[Outcome] = []
        inferred, model_s = 0, 0.0
        upcoming = loop.run_in_executor(None, prepare, chunks[0]) if chunks else None
        try:
            for index in range(len(chunks)):
                prepared = await upcoming
                if index + 1 < len(chunks):
                    upcoming = loop.run_in_executor(None, prepare, chunks[index + 1])
                logits, embeddings, seconds = await loop.run_in_executor(self.model_thread, _timed_infer, model,
                                                                         prepared)
                inferred, model_s = inferred + len(prepared.records), model_s + seconds
                # Off the loop too: building and validating 32 outcome events would hold Kafka's I/O for tens of ms.
                outcomes += await loop.run_in_executor(None, self.scorer.route, prepared, logits, model, embeddings)
        finally:
            if upcoming is not None and not upcoming.done():
                # The batch failed (MinIO went away, say): the chunk being decoded is not needed any more.
                upcoming.cancel()
                await asyncio.gather(upcoming, return_exceptions=True)
        if inferred:  # a batch of dead letters only never reached the model
            self._metrics.batch_inferred(inferred, model_s)
        return sorted(outcomes, key=lambda o: (o.record.partition, o.record.offset))

    async def model_works(self, model: ActiveModel) -> bool:
        """Whether `model` still scores one blank image to finite logits: tells a failing model from a bad record."""
        loop = asyncio.get_running_loop()
        blank = np.zeros((1, model.input_size, model.input_size, 3), np.float32)
        try:
            logits = await loop.run_in_executor(self.model_thread, model.runtime.logits, blank)
        except Exception:
            log.exception("model %s fails on a blank image", model.version)
            return False
        return bool(np.isfinite(logits).all())

    def close(self) -> None:
        self.model_thread.shutdown(wait=True)
        self._io.shutdown(wait=True)


def _timed_infer(model: ActiveModel, batch: PreparedBatch) -> tuple[np.ndarray, np.ndarray | None, float]:
    """`infer`, and the seconds it took (timed in the model thread: waiting for the thread is not model time)."""
    started = time.perf_counter()
    logits, embeddings = infer(model, batch)
    return logits, embeddings, time.perf_counter() - started
