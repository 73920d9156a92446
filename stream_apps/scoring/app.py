"""The scoring Faust app: captured images -> classified / OOD / dead letters, and exact counts.

Agents:
- `score` takes micro-batches of ImageCaptured records, scores them off the event loop (the next batch
  is fetched and decoded while the model runs this one) and sends one outcome per record, batch after batch
  in order; a batch's offsets are committed only after every outcome was acknowledged.
- `count` keeps one count state per classified partition (see counting.py) in a table whose changelog
  is co-partitioned with the classified topic.
- a timer publishes the state of the partitions this worker owns to counts.partition-snapshots;
  `aggregate` (one partition, so one worker) sums them into counts.totals and counts.windows.
- a task keeps the served model in step with the registry's production row (see model_holder.py): at start,
  on every models.promoted announcement (every worker, see promotions.py) and on a timer; swaps land between
  batches, without a restart.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import TP

from infra.clients import minio_client
from infra.image_retention import ImageRetention
from infra.kafka_security import faust_broker
from infra.retry import Backoff, Degradation, is_transient, retry_transient_async
from infra.settings import Settings
from schemas.codec import InvalidEvent, decode_event, encode, new_event
from schemas.events import EventType, parse_timestamp, route, utc_now
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
from stream_apps.scoring.batch import SOURCE, BatchScorer, CapturedRecord, Outcome
from stream_apps.scoring.counting import (
    CountKey,
    CountLimits,
    apply_classified,
    empty_state,
    live_windows,
    totals,
    window_end,
)
from stream_apps.scoring.decode import ImageLimits
from stream_apps.scoring.image_store import ImageStore
from stream_apps.scoring.in_order import InOrderBatches
from stream_apps.scoring.model_holder import ModelHolder
from stream_apps.scoring.outcome_delivery import deliver
from stream_apps.scoring.patient_scoring import PatientScorer
from stream_apps.scoring.pipeline import ScoringPipeline
from stream_apps.scoring.promotions import PromotionFeed
from stream_apps.stream_app import StreamApp

log = logging.getLogger(__name__)
COMMIT_RECHECK_S = 1.0  # how soon a classified capture whose record is not committed yet is looked at again


def create_app(settings: Settings, worker_name: str = "scoring-1", web_port: int | None = None) -> faust.App:
    web_port = web_port or settings.scoring_web_port
    datadir = settings.state_dir / "faust" / worker_name
    datadir.mkdir(parents=True, exist_ok=True)
    app = StreamApp(
        f"{settings.topic_prefix}scoring",  # the prefix keeps deployments' groups and changelogs apart
        **faust_broker(settings),
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
        retry_max_delay_s=settings.retry_max_delay_s,
    )
    pipeline = ScoringPipeline(BatchScorer(
        ImageStore(minio_client(settings), settings.max_image_bytes),
        ImageLimits(settings.max_image_bytes, settings.max_image_pixels),
        settings.keep_sample_rate,
        settings.audit_rate,
    ))
    degradation = Degradation()  # what this worker waits for (a store down): `/health/` says degraded and why
    holder = ModelHolder(settings, settings.scoring_batch_size, degradation)
    captured = raw_topic(app, settings, IMAGES_CAPTURED)
    classified = raw_topic(app, settings, IMAGES_CLASSIFIED)
    outputs = {spec.name: raw_topic(app, settings, spec)
               for spec in (IMAGES_CLASSIFIED, IMAGES_OOD, DEAD_LETTERS, COUNTS_TOTALS, COUNTS_WINDOWS)}
    snapshots = raw_topic(app, settings, COUNTS_SNAPSHOTS)
    # Untyped JSON both ways: keys come back as str and values as dict after a changelog recovery.
    json_by_text = faust.Schema(key_serializer="json", value_serializer="json")
    count_state = app.Table("count-state", partitions=settings.image_partitions, schema=json_by_text)
    latest_snapshots = app.Table("latest-snapshots", partitions=1, schema=json_by_text)
    # (due, (bucket, key), captured partition, offset) of classified captures, in due order; only image_retention
    # deletes, after its checks.
    pending_deletions: deque[tuple[float, tuple[str, str], TP, int]] = deque()
    retention = ImageRetention.of(settings)
    deletion_backoff = Backoff(cap_s=settings.retry_max_delay_s)
    published_updates: dict[str, tuple[int, int]] = {}  # partition -> (updates, live windows) last published
    count_limits = CountLimits.from_settings(settings)
    published_counts: dict[CountKey, int] = {}

    async def send(event) -> asyncio.Future:
        target = route(event)
        return await outputs[target.topic.name].send(key=target.key.encode(), value=encode(event))

    async def send_outcomes(outcomes: list[Outcome]) -> None:
        """Send and wait for every acknowledgement; only then may the batch's offsets be committed."""
        outcomes = await deliver(outcomes, send, degradation=degradation, max_delay_s=settings.retry_max_delay_s)
        # Deleted later, not now: a batch redelivered after a rebalance must still find its images and
        # score them to the same outcome. A crash before the delay only leaves an image behind.
        due = time.monotonic() + settings.delete_delay_s
        pending_deletions.extend((due, outcome.delete_after, TP(outcome.record.topic, outcome.record.partition),
                                  outcome.record.offset) for outcome in outcomes if outcome.delete_after)

    # A passing failure waits and scores the batch again; a failing model waits; only a bad record is dead-lettered.
    patient = PatientScorer(pipeline.score, holder.ready, pipeline.model_works, degradation=degradation,
                            max_delay_s=settings.retry_max_delay_s)

    async def score_batch(records: list[CapturedRecord]) -> list[Outcome]:
        return await patient.score(records)

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
        """Classified captures past their delay go to retention, off the loop. A store that is down keeps them
        pending (backoff, `/health/` degraded); any other failure only leaves images behind for `images gc`."""
        now, due, uncommitted = time.monotonic(), [], []
        while pending_deletions and pending_deletions[0][0] <= now:
            entry = pending_deletions.popleft()
            # Only once the record's offset is committed: a worker that reads it again must still find its image.
            if app.consumer.committed_past(entry[2], entry[3]):
                due.append(entry)
            elif entry[2] in app.consumer.assignment():
                uncommitted.append((now + COMMIT_RECHECK_S, *entry[1:]))
            else:  # the partition moved on before its commit: the image stays for `wastex images gc`
                log.info("not deleting %s: its record was not committed before its partition moved", entry[1][1])
        pending_deletions.extendleft(reversed(uncommitted))
        if not due:
            return
        loop = asyncio.get_running_loop()
        try:
            done = await loop.run_in_executor(None, retention.delete_classified_captures,
                                              [entry[1] for entry in due], settings.delete_delay_s)
        except Exception:
            log.exception("deleting %d classified captures failed; they stay until `wastex images gc`", len(due))
            return
        if done.error is None:
            deletion_backoff.reset()
            degradation.recovered("image deletions")
            return
        delay = deletion_backoff.next_delay()
        reason = f"{type(done.error).__name__}: {done.error}"[:300]
        log.warning("%d image deletions wait %.1f s for a passing failure: %s", len(done.retry), delay, reason)
        degradation.waiting("image deletions", reason)
        retried = due[len(due) - len(done.retry):]  # the pass stopped there: the rest, in order
        pending_deletions.extendleft((now + delay, *entry[1:]) for entry in reversed(retried))

    @app.agent(classified, concurrency=1)
    async def count(stream):
        async for event in stream.events():
            try:
                classified_event = decode_event(event.value)
                payload = classified_event.payload
            except InvalidEvent:
                log.error("skipping an invalid record at %s:%s", event.message.tp, event.message.offset)
                continue
            key = str(event.message.partition)
            # Copy: the memory store hands out its own object, and the changelog write happens on assignment.
            stored = count_state.get(key)
            state = copy.deepcopy(stored) if stored is not None else empty_state()
            position = payload["captured_position"]
            if apply_classified(state, position["partition"], position["offset"], payload["predicted_class"],
                                payload["camera_id"], parse_timestamp(payload["captured_at"]),
                                parse_timestamp(classified_event.occurred_at), datetime.now(UTC), count_limits):
                count_state[key] = state

    @app.timer(1.0)
    async def publish_snapshots() -> None:
        """Each owned partition's state without its stale windows, again whenever a count or a window changed."""
        try:
            await _publish_owned_snapshots()
        except Exception as error:  # a timer that raises stops the worker: wait for the next tick instead
            _timer_failed("kafka (publishing count snapshots)", error)
        else:
            degradation.recovered("kafka (publishing count snapshots)")

    async def _publish_owned_snapshots() -> None:
        owned = app.assignor.assigned_actives()
        now = datetime.now(UTC)
        for partition in range(settings.image_partitions):
            key = str(partition)
            if TP(classified.get_topic_name(), partition) not in owned:
                published_updates.pop(key, None)
                continue
            state = count_state.get(key)
            if state is None:
                continue
            live = live_windows(state, now, count_limits)
            published = (live["updates"], len(live["windows"]))  # a window aging out is a change as well
            if published_updates.get(key) != published:
                await snapshots.send(key=key.encode(), value=json.dumps(live).encode(), partition=0)
                published_updates[key] = published

    @app.timer(10.0)
    async def forget_stale_published_counts() -> None:
        """What was published for windows no longer live is forgotten, so the memory follows the live windows."""
        oldest = count_limits.oldest_window(datetime.now(UTC))
        for stale in [key for key in published_counts if key[2] is not None and key[2] < oldest]:
            del published_counts[stale]

    def _timer_failed(what: str, error: Exception) -> None:
        if is_transient(error):
            log.warning("%s: a passing failure, trying again on the next tick: %r", what, error)
            degradation.waiting(what, f"{type(error).__name__}: {error}"[:300])
        else:
            log.exception("%s failed; trying again on the next tick", what)

    @app.agent(snapshots, concurrency=1)
    async def aggregate(stream):
        async for event in stream.events():
            key, snapshot = event.key.decode(), json.loads(event.value)
            current = latest_snapshots.get(key)
            if current is not None and current["updates"] > snapshot["updates"]:
                continue  # a late snapshot from the partition's previous owner
            latest_snapshots[key] = snapshot
            await retry_transient_async(_publish_changed_counts, what="kafka (publishing counts)",
                                        degradation=degradation, backoff=Backoff(cap_s=settings.retry_max_delay_s))

    async def _publish_changed_counts() -> None:
        oldest = count_limits.oldest_window(datetime.now(UTC))
        summed = totals((value for value in latest_snapshots.values() if value is not None), oldest)
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
        oldest = count_limits.oldest_window(datetime.now(UTC))
        summed = totals((value for value in latest_snapshots.values() if value is not None), oldest)
        return web.json(_counts_document(summed))

    @app.page("/health/")
    async def health_page(web, request):
        model = holder.current
        return web.json({"worker": worker_name, "model_version": model.version if model else None,
                         "model_digest": model.digest if model else None,
                         "runtime": model.runtime.runtime if model else None, **degradation.report()})

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
