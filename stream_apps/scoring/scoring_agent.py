"""The scoring stage: captured images -> classified / OOD / dead letters, with the production model served.

- `score` takes micro-batches of ImageCaptured records, scores them off the event loop (the next batch is fetched
  and decoded while the model runs this one) and sends one outcome per record, batch after batch in order; a
  batch's offsets are committed only after every outcome was acknowledged.
- a task keeps the served model in step with the registry's production row (see model_holder.py): at start, on
  every models.promoted announcement (every worker, see promotions.py) and on a timer; swaps land between batches,
  without a restart.
- a task follows cameras.drift (camera_drift.py): images of a camera marked drifting are judged with the model's
  stricter thresholds.
- a timer deletes the images of classified captures once their records are committed (capture_deletions.py).
- `metrics` (worker_metrics.py) counts each delivered batch's outcomes, times the model, follows swaps and deletions.
"""

from __future__ import annotations

import asyncio

import faust

from infra.clients import minio_client
from infra.cpu_budget import thread_budget
from infra.retry import Degradation
from infra.settings import Settings
from schemas.topics import IMAGES_CAPTURED
from stream_apps.raw_topics import raw_topic
from stream_apps.scoring.batch import BatchScorer, CapturedRecord, Outcome
from stream_apps.scoring.camera_drift import CameraDriftFeed, DriftingCameras
from stream_apps.scoring.capture_deletions import CaptureDeletions
from stream_apps.scoring.decode import ImageLimits
from stream_apps.scoring.image_store import ImageStore
from stream_apps.scoring.in_order import InOrderBatches
from stream_apps.scoring.model_holder import ModelHolder
from stream_apps.scoring.outcome_delivery import deliver
from stream_apps.scoring.outcome_topics import OutcomeTopics
from stream_apps.scoring.patient_scoring import PatientScorer
from stream_apps.scoring.pipeline import ScoringPipeline
from stream_apps.scoring.promotions import PromotionFeed
from stream_apps.scoring.worker_metrics import ScoringMetrics


def add_scoring(app: faust.App, settings: Settings, outputs: OutcomeTopics, degradation: Degradation,
                metrics: ScoringMetrics, drifting: DriftingCameras) -> ModelHolder:
    """Register the stage's agents, tasks and timer on `app`; the holder of the model it serves. `drifting` is
    kept in step with cameras.drift."""
    threads = thread_budget(settings.model_threads, settings.decode_threads)
    pipeline = ScoringPipeline(BatchScorer(
        ImageStore(minio_client(settings), settings.max_image_bytes),
        ImageLimits(settings.max_image_bytes, settings.max_image_pixels),
        settings.keep_sample_rate,
        settings.audit_rate,
        drifting,
    ), decode_threads=threads.decode, metrics=metrics)
    holder = ModelHolder(settings, settings.scoring_batch_size, degradation, threads.model, metrics=metrics)
    deletions = CaptureDeletions(settings, degradation)
    metrics.watch_deletions(deletions.awaiting)
    captured = raw_topic(app, settings, IMAGES_CAPTURED)
    # A passing failure waits and scores the batch again; a failing model waits; only a bad record is dead-lettered.
    patient = PatientScorer(pipeline.score, holder.ready, pipeline.model_works, degradation=degradation,
                            max_delay_s=settings.retry_max_delay_s)

    async def send_outcomes(outcomes: list[Outcome]) -> None:
        """Send and wait for every acknowledgement; only then may the batch's offsets be committed."""
        delivered = await deliver(outcomes, outputs.send, degradation=degradation,
                                  max_delay_s=settings.retry_max_delay_s)
        metrics.outcomes_delivered(delivered)
        deletions.schedule(delivered)

    @app.task
    async def serve_promoted_models() -> None:
        """Serve the registry's production model; every announcement on models.promoted makes the holder look."""
        feed = PromotionFeed(settings)
        await feed.start()  # before the first look: a promotion in between is read, not missed
        keeping = asyncio.ensure_future(holder.keep_in_step())
        try:
            async for promoted in feed.events():
                holder.announced(promoted)
        finally:
            keeping.cancel()
            await feed.stop()
            holder.close()

    @app.task
    async def follow_camera_drift() -> None:
        feed = CameraDriftFeed(settings, degradation)
        await feed.start()
        try:
            async for event in feed.events():
                drifting.apply(event)
        finally:
            await feed.stop()

    @app.agent(captured, concurrency=1)
    async def score(stream):
        """The next batch is fetched and decoded while the model runs this one and its outcomes are sent."""
        batch_wait = settings.scoring_batch_wait_ms / 1000
        async with InOrderBatches(send_outcomes, stream.ack) as batches:
            async for events in stream.take_events(settings.scoring_batch_size, within=batch_wait):
                records = [CapturedRecord(e.message.topic, e.message.partition, e.message.offset, e.message.key,
                                          e.message.value) for e in events]
                await batches.submit(events, patient.score(records))

    @app.timer(1.0)
    async def delete_due_images() -> None:
        await deletions.delete_due(app.consumer)

    return holder
