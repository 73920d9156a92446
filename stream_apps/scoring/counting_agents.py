"""The counting stage: exact counts per class and camera from the classified topic (state kept as counting.py says).

- `count` keeps one count state per classified partition in a table whose changelog is co-partitioned with the
  classified topic.
- a timer publishes the state of the partitions this worker owns to counts.partition-snapshots; `aggregate` (one
  partition, so one worker) sums them into counts.totals and counts.windows, and serves them on `/counts/`.
"""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import TP, EventT

from infra.retry import Backoff, Degradation, is_transient, retry_transient_async
from infra.settings import Settings
from schemas.codec import InvalidEvent, decode_event, new_event
from schemas.events import EventType, parse_timestamp, utc_now
from schemas.topics import COUNTS_SNAPSHOTS, IMAGES_CLASSIFIED
from stream_apps.raw_topics import raw_topic
from stream_apps.scoring.batch import SOURCE
from stream_apps.scoring.counting import (
    CountKey,
    CountLimits,
    apply_classified,
    empty_state,
    live_windows,
    totals,
    window_end,
)
from stream_apps.scoring.outcome_topics import OutcomeTopics

log = logging.getLogger(__name__)
COUNT_CHUNK = 500  # classified records counted per state write, at most
COUNT_CHUNK_WAIT_S = 0.1  # a chunk is counted once it is full, else at most this long after the one before


def add_counting(app: faust.App, settings: Settings, outputs: OutcomeTopics, degradation: Degradation) -> None:
    """Register the stage's agents, timers and `/counts/` page on `app`."""
    classified = raw_topic(app, settings, IMAGES_CLASSIFIED)
    snapshots = raw_topic(app, settings, COUNTS_SNAPSHOTS)
    # Untyped JSON both ways: keys come back as str and values as dict after a changelog recovery.
    json_by_text = faust.Schema(key_serializer="json", value_serializer="json")
    count_state = app.Table("count-state", partitions=settings.image_partitions, schema=json_by_text)
    latest_snapshots = app.Table("latest-snapshots", partitions=1, schema=json_by_text)
    count_limits = CountLimits.from_settings(settings)
    published_updates: dict[str, tuple[int, int]] = {}  # partition -> (updates, live windows) last published
    published_counts: dict[CountKey, int] = {}

    @app.agent(classified, concurrency=1)
    async def count(stream):
        # A chunk at a time: each partition's state is copied and written to the changelog once per chunk, not
        # once per image (the state grows with the live windows: about 22 kB, 2 ms to copy and write, with an hour).
        async for events in stream.take_events(COUNT_CHUNK, within=COUNT_CHUNK_WAIT_S):
            states: dict[str, dict[str, Any]] = {}
            changed: dict[str, EventT] = {}  # partition -> its last event that changed the state
            now = datetime.now(UTC)
            for event in events:
                try:
                    classified_event = decode_event(event.value)
                    payload = classified_event.payload
                except InvalidEvent:
                    log.error("skipping an invalid record at %s:%s", event.message.tp, event.message.offset)
                    continue
                key = str(event.message.partition)
                if key not in states:
                    # Copy: the memory store hands out its own object, and the changelog write happens on assignment.
                    stored = count_state.get(key)
                    states[key] = copy.deepcopy(stored) if stored is not None else empty_state()
                position = payload["captured_position"]
                if apply_classified(states[key], position["partition"], position["offset"], payload["predicted_class"],
                                    payload["camera_id"], parse_timestamp(payload["captured_at"]),
                                    parse_timestamp(classified_event.occurred_at), now, count_limits):
                    changed[key] = event
            for key, event in changed.items():
                # The table writes to the changelog partition of the current event: make it this partition's.
                stream._set_current_event(event)
                count_state[key] = states[key]

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
            await outputs.send(event)
            published_counts[(scope, name, start)] = value

    @app.page("/counts/")
    @app.table_route(table=latest_snapshots, exact_key="0")
    async def counts_page(web, request):
        oldest = count_limits.oldest_window(datetime.now(UTC))
        summed = totals((value for value in latest_snapshots.values() if value is not None), oldest)
        return web.json(counts_document(summed))


def counts_document(summed: dict[CountKey, int]) -> dict[str, Any]:
    """`/counts/`: running totals per scope and name, and the live windows."""
    document: dict[str, Any] = {"totals": {"class": {}, "camera": {}}, "windows": []}
    for (scope, name, start), value in sorted(summed.items(), key=lambda item: (item[0][2] or "", item[0][:2])):
        if start is None:
            document["totals"][scope][name] = value
        else:
            document["windows"].append({"scope": scope, "key": name, "start": start, "end": window_end(start),
                                        "count": value})
    return document
