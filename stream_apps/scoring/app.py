"""The scoring Faust app: captured images -> classified / OOD / dead letters, and exact counts.

Agents:
- `score` takes micro-batches of ImageCaptured records, scores them off the event loop (the next batch
  is fetched and decoded while the model runs this one) and sends one outcome per record, batch after batch
  in order; a batch's offsets are committed only after every outcome was acknowledged.
- `count` keeps one count state per classified partition (see counting.py) in a table whose changelog
  is co-partitioned with the classified topic.
- a timer publishes the state of the partitions this worker owns to counts.partition-snapshots;
  `aggregate` (one partition, so one worker) sums them into counts.totals and counts.windows.
- a task loads the production model, then follows models.promoted (every worker, see promotions.py) and
  swaps to each promoted model between batches, without a restart.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import posixpath
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import numpy as np
from faust.types import TP

from infra.clients import minio_client
from infra.settings import Settings
from schemas.codec import InvalidEvent, decode_event, encode, new_event
from schemas.events import Event, EventType, parse_timestamp, route, utc_now
from schemas.topics import (
    COUNTS_SNAPSHOTS,
    COUNTS_TOTALS,
    COUNTS_WINDOWS,
    DEAD_LETTERS,
    IMAGES_CAPTURED,
    IMAGES_CLASSIFIED,
    IMAGES_OOD,
)
from stream_apps.raw_topics import raw_topic
from stream_apps.scoring.active_model import ActiveModel, fetch_artefact, load_model_folder, load_production_model
from stream_apps.scoring.batch import SOURCE, BatchScorer, CapturedRecord, Outcome, dead_letter
from stream_apps.scoring.counting import CountKey, apply_classified, empty_state, totals, window_end
from stream_apps.scoring.decode import ImageLimits
from stream_apps.scoring.image_store import ImageStore
from stream_apps.scoring.in_order import InOrderBatches
from stream_apps.scoring.pipeline import ScoringPipeline
from stream_apps.scoring.promotions import PromotionFeed
from stream_apps.stream_app import StreamApp

log = logging.getLogger(__name__)
MODEL_POLL_S = 5.0


class ModelHolder:
    """The model this worker serves. A batch takes the current one when it starts, so a swap lands between
    batches; the next model is loaded and warmed up in a thread of its own while the current one serves."""

    def __init__(self, settings: Settings, pipeline: ScoringPipeline) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="model-loader")
        self.current: ActiveModel | None = None

    async def ready(self) -> ActiveModel:
        while self.current is None:
            loop = asyncio.get_running_loop()
            self.current = await loop.run_in_executor(self._pipeline.model_thread, load_production_model,
                                                      self._settings)
            if self.current is None:
                log.warning("no production model in the registry yet; retrying in %.0f s", MODEL_POLL_S)
                await asyncio.sleep(MODEL_POLL_S)
            else:
                log.info("serving model %s (%s)", self.current.version, self.current.runtime.runtime)
        return self.current

    async def swap(self, promoted: Event) -> None:
        """Serve the promoted model from the next batch on; a model that fails to load leaves the old one."""
        version = promoted.payload["model_version"]
        if self.current is not None and self.current.version == version:
            return
        folder_uri = posixpath.dirname(promoted.payload["artefact_uri"])
        loop = asyncio.get_running_loop()
        try:
            model = await loop.run_in_executor(self._loader, self._load_warm, version, folder_uri)
        except Exception:
            log.exception("model %s could not be loaded; still serving %s", version,
                          self.current.version if self.current else None)
            return
        previous, self.current = self.current, model
        log.info("serving model %s (%s) instead of %s", version, model.runtime.runtime,
                 previous.version if previous else None)

    def _load_warm(self, version: str, folder_uri: str) -> ActiveModel:
        model = load_model_folder(version, fetch_artefact(self._settings, version, folder_uri))
        size = model.input_size
        # The first call allocates the interpreter's tensors; paying for it here keeps it off a live batch.
        model.runtime.logits(np.zeros((self._settings.scoring_batch_size, size, size, 3), np.float32))
        return model

    def close(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)


def create_app(settings: Settings, worker_name: str = "scoring-1", web_port: int | None = None) -> faust.App:
    web_port = web_port or settings.scoring_web_port
    datadir = settings.state_dir / "faust" / worker_name
    datadir.mkdir(parents=True, exist_ok=True)
    app = StreamApp(
        f"{settings.topic_prefix}scoring",  # the prefix keeps deployments' groups and changelogs apart
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(datadir),
        web_host="127.0.0.1",
        web_port=web_port,
        canonical_url=f"http://127.0.0.1:{web_port}",
        topic_replication_factor=1,
        topic_partitions=settings.image_partitions,
        table_standby_replicas=0,
        # A blocked loop stalls rebalances: keep what one poll and one stream buffer hold modest.
        broker_max_poll_records=2 * settings.scoring_batch_size,
        stream_buffer_maxsize=4 * settings.scoring_batch_size,
        producer_acks=-1,
        # Count-table writes come one per image: batching them for a few ms spares the broker a request each.
        producer_linger=0.01,
        # A worker that died leaves the group after 15 s instead of a minute; its partitions move on sooner.
        broker_session_timeout=15,
        broker_heartbeat_interval=3,
        consumer_auto_offset_reset="earliest",
    )
    pipeline = ScoringPipeline(BatchScorer(
        ImageStore(minio_client(settings), settings.max_image_bytes),
        ImageLimits(settings.max_image_bytes, settings.max_image_pixels),
        settings.keep_sample_rate,
    ))
    holder = ModelHolder(settings, pipeline)
    captured = raw_topic(app, settings, IMAGES_CAPTURED)
    classified = raw_topic(app, settings, IMAGES_CLASSIFIED)
    outputs = {spec.name: raw_topic(app, settings, spec)
               for spec in (IMAGES_CLASSIFIED, IMAGES_OOD, DEAD_LETTERS, COUNTS_TOTALS, COUNTS_WINDOWS)}
    snapshots = raw_topic(app, settings, COUNTS_SNAPSHOTS)
    # Untyped JSON both ways: keys come back as str and values as dict after a changelog recovery.
    json_by_text = faust.Schema(key_serializer="json", value_serializer="json")
    count_state = app.Table("count-state", partitions=settings.image_partitions, schema=json_by_text)
    latest_snapshots = app.Table("latest-snapshots", partitions=1, schema=json_by_text)
    pending_deletions: deque[tuple[float, tuple[str, str]]] = deque()
    published_updates: dict[str, int] = {}
    published_counts: dict[CountKey, int] = {}

    async def send(event) -> asyncio.Future:
        target = route(event)
        return await outputs[target.topic.name].send(key=target.key.encode(), value=encode(event))

    async def send_outcomes(outcomes: list[Outcome]) -> None:
        """Send and wait for every acknowledgement; only then may the batch's offsets be committed."""
        pending = [await send(outcome.event) for outcome in outcomes]
        await asyncio.gather(*pending)
        # Deleted later, not now: a batch redelivered after a rebalance must still find its images and
        # score them to the same outcome. A crash before the delay only leaves an image behind.
        due = time.monotonic() + settings.delete_delay_s
        pending_deletions.extend((due, target) for target in
                                 (outcome.delete_after for outcome in outcomes) if target)

    async def score_batch(records: list[CapturedRecord]) -> list[Outcome]:
        model = await holder.ready()
        try:
            return await pipeline.score(records, model)
        except Exception as error:  # a failing model must not lose the batch
            log.exception("scoring a batch of %d failed; dead-lettering it", len(records))
            return [dead_letter(record, None, error) for record in records]

    @app.task
    async def serve_promoted_models() -> None:
        """Load the production model, then swap to every model promoted after it."""
        feed = PromotionFeed(settings)
        await feed.start()  # before loading: a promotion in between is read, not missed
        try:
            await holder.ready()
            async for promoted in feed.events():
                await holder.swap(promoted)
        finally:
            await feed.stop()
            holder.close()

    @app.agent(captured, concurrency=1)
    async def score(stream):
        """The next batch is fetched and decoded while the model runs this one and its outcomes are sent."""
        batch_wait = settings.scoring_batch_wait_ms / 1000
        async with InOrderBatches(send_outcomes, stream.ack) as batches:
            async for events in stream.take_events(settings.scoring_batch_size, within=batch_wait):
                records = [CapturedRecord(e.message.topic, e.message.partition, e.message.offset, e.message.key,
                                          e.message.value) for e in events]
                await batches.submit(events, score_batch(records))

    @app.timer(1.0)
    async def delete_due_images() -> None:
        now, due = time.monotonic(), []
        while pending_deletions and pending_deletions[0][0] <= now:
            due.append(pending_deletions.popleft()[1])
        if due:
            await pipeline.delete_images(due)

    @app.agent(classified, concurrency=1)
    async def count(stream):
        async for event in stream.events():
            try:
                payload = decode_event(event.value).payload
            except InvalidEvent:
                log.error("skipping an invalid record at %s:%s", event.message.tp, event.message.offset)
                continue
            key = str(event.message.partition)
            # Copy: the memory store hands out its own object, and the changelog write happens on assignment.
            stored = count_state.get(key)
            state = copy.deepcopy(stored) if stored is not None else empty_state()
            position = payload["captured_position"]
            if apply_classified(state, position["partition"], position["offset"], payload["predicted_class"],
                                payload["camera_id"], parse_timestamp(payload["captured_at"])):
                count_state[key] = state

    @app.timer(1.0)
    async def publish_snapshots() -> None:
        owned = app.assignor.assigned_actives()
        for partition in range(settings.image_partitions):
            key = str(partition)
            if TP(classified.get_topic_name(), partition) not in owned:
                published_updates.pop(key, None)
                continue
            state = count_state.get(key)
            if state is not None and published_updates.get(key) != state["updates"]:
                await snapshots.send(key=key.encode(), value=json.dumps(state).encode(), partition=0)
                published_updates[key] = state["updates"]

    @app.agent(snapshots, concurrency=1)
    async def aggregate(stream):
        async for event in stream.events():
            key, snapshot = event.key.decode(), json.loads(event.value)
            current = latest_snapshots.get(key)
            if current is not None and current["updates"] > snapshot["updates"]:
                continue  # a late snapshot from the partition's previous owner
            latest_snapshots[key] = snapshot
            await _publish_changed_counts()

    async def _publish_changed_counts() -> None:
        summed = totals(value for value in latest_snapshots.values() if value is not None)
        as_of = utc_now()
        for (scope, name, start), value in summed.items():
            if published_counts.get((scope, name, start)) == value:
                continue
            window = None if start is None else {"start": start, "end": window_end(start)}
            event = new_event(EventType.COUNTS_UPDATED, {"scope": scope, "key": name, "window": window,
                                                         "count": value, "as_of": as_of}, SOURCE)
            await send(event)
            published_counts[(scope, name, start)] = value

    @app.page("/counts/")
    @app.table_route(table=latest_snapshots, exact_key="0")
    async def counts_page(web, request):
        summed = totals(value for value in latest_snapshots.values() if value is not None)
        return web.json(_counts_document(summed))

    @app.page("/health/")
    async def health_page(web, request):
        model = holder.current
        return web.json({"worker": worker_name, "model_version": model.version if model else None,
                         "runtime": model.runtime.runtime if model else None})

    return app


def _counts_document(summed: dict[CountKey, int]) -> dict[str, Any]:
    document: dict[str, Any] = {"totals": {"class": {}, "camera": {}}, "windows": []}
    for (scope, name, start), value in sorted(summed.items(), key=lambda item: (item[0][2] or "", item[0][:2])):
        if start is None:
            document["totals"][scope][name] = value
        else:
            document["windows"].append({"scope": scope, "key": name, "start": start, "end": window_end(start),
                                        "count": value})
    return document
