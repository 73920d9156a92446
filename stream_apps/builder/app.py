"""The version builder Faust app: the label log into staging, version requests into delta versions.

Agents:
- `stage` reads the label log (LabelAssigned, ImageDiscarded, LabelRetracted) and keeps the latest decision
  per image in PostgreSQL; the record's offset makes a redelivery a no-op.
- `build` answers each CreateVersionRequested with exactly one version (request id unique in PostgreSQL),
  after staging the label log up to its end, so every decision sent before the request is in it,
  and one DatasetVersionCreated (event id derived from the request id).
- at start, versions whose announcement a crash interrupted are announced; a timer applies the version
  policy (every N staged labels, every T hours) by requesting a version like anyone else.
Database and object store work runs in one database thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import faust

from infra.clients import db_sessions, minio_client
from infra.db.dataset_versions import VersionError, VersionStore
from infra.publisher import EventPublisher
from infra.settings import Settings
from schemas.codec import InvalidEvent, dead_letter_event, decode_event, encode, new_event
from schemas.events import DeadLetterReason, EventType, route
from schemas.topics import DEAD_LETTERS, LABELS, VERSION_REQUESTS
from stream_apps.builder.announcer import SOURCE, VersionAnnouncer
from stream_apps.builder.label_log import LABEL_EVENTS, LabelLogReader, LogPosition
from stream_apps.builder.version_builder import VersionBuilder
from stream_apps.raw_topics import raw_topic
from stream_apps.stream_app import StreamApp

log = logging.getLogger(__name__)
POLICY_CHECK_S = 30.0


def create_app(settings: Settings, worker_name: str = "builder-1", web_port: int | None = None) -> faust.App:
    web_port = web_port or settings.builder_web_port
    datadir = settings.state_dir / "faust" / worker_name
    datadir.mkdir(parents=True, exist_ok=True)
    app = StreamApp(
        f"{settings.topic_prefix}builder",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(datadir),
        web_host="127.0.0.1",
        web_port=web_port,
        topic_replication_factor=1,
        producer_acks=-1,
        broker_session_timeout=15,
        broker_heartbeat_interval=3,
        consumer_auto_offset_reset="earliest",
    )
    store = VersionStore(db_sessions(settings))
    builder = VersionBuilder(db_sessions(settings), store,
                             VersionAnnouncer(settings, store, minio_client(settings), EventPublisher(settings)),
                             LabelLogReader(settings), settings.version_snapshot_depth)
    database = ThreadPoolExecutor(1, thread_name_prefix="database")
    labels = raw_topic(app, settings, LABELS)
    requests = raw_topic(app, settings, VERSION_REQUESTS)
    dead_letters = raw_topic(app, settings, DEAD_LETTERS)

    async def blocking(function, *args):
        return await asyncio.get_running_loop().run_in_executor(database, function, *args)

    async def send_dead_letter(event: faust.types.EventT, error: Exception, reason: DeadLetterReason | None) -> None:
        message = event.message
        letter = dead_letter_event(message.value, error, topic=message.topic, partition=message.partition,
                                   offset=message.offset, key=message.key, service=SOURCE, reason=reason)
        await (await dead_letters.send(key=route(letter).key.encode(), value=encode(letter)))

    async def decoded(event: faust.types.EventT, expected: set[EventType]):
        """The record's event, or None after dead-lettering it."""
        try:
            result = decode_event(event.message.value)
            if result.event_type not in expected:
                raise InvalidEvent(f"{result.event_type} does not belong on {event.message.topic}",
                                   path="event_type")
            return result
        except InvalidEvent as error:
            log.warning("dead-lettering %s:%s: %s", event.message.topic, event.message.offset, error)
            await send_dead_letter(event, error, None)
            return None

    @app.task
    async def announce_interrupted() -> None:
        for name in await blocking(builder.announce_pending):
            log.info("announced %s, whose announcement was interrupted", name)

    @app.agent(labels, concurrency=1)
    async def stage(stream):
        async for event in stream.events():
            decision = await decoded(event, LABEL_EVENTS)
            if decision is not None:
                position = LogPosition(event.message.partition, event.message.offset)
                await blocking(builder.stage, decision, position)

    @app.agent(requests, concurrency=1)
    async def build(stream):
        async for event in stream.events():
            request = await decoded(event, {EventType.CREATE_VERSION_REQUESTED})
            if request is None:
                continue
            try:
                version = await blocking(builder.build, request.payload)
            except VersionError as error:  # an unknown parent, a name taken: the request can never succeed
                await send_dead_letter(event, error, DeadLetterReason.PROCESSING_ERROR)
                continue
            log.info("version %s for request %s: %s", version.name, request.payload["request_id"], version.changes)

    @app.timer(POLICY_CHECK_S)
    async def version_policy() -> None:
        if not (settings.version_every_labels or settings.version_every_hours):
            return
        staged = await blocking(store.staged_count)
        if staged == 0:
            return
        last = await blocking(builder.last_version_at)
        due_by_labels = settings.version_every_labels and staged >= settings.version_every_labels
        due_by_time = settings.version_every_hours and (
            last is None or datetime.now(UTC) - last >= timedelta(hours=settings.version_every_hours))
        if not (due_by_labels or due_by_time):
            return
        # One request per state of the version list: a repeated check before it is built asks for the same.
        latest = await blocking(lambda: max((v.id for v in store.versions()), default=0))
        request = new_event(EventType.CREATE_VERSION_REQUESTED, {
            "request_id": f"policy-after-{latest}", "requested_by": "version-policy", "trigger": "policy",
            "notes": f"{staged} staged labels"}, SOURCE)
        await (await requests.send(key=route(request).key.encode(), value=encode(request)))

    @app.page("/health/")
    async def health_page(web, request):
        return web.json({"worker": worker_name, "staged": await blocking(store.staged_count)})

    return app
