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
A passing failure (PostgreSQL, MinIO or Kafka down) is waited out with capped backoff: the record is neither
skipped nor dead-lettered, and `/health/` says `degraded` and why. A record that can never succeed (an invalid
event, a request for an unknown parent or a taken name, a value the database refuses) is dead-lettered on its own.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import faust

from infra.clients import db_sessions, minio_client
from infra.db.dataset_versions import VersionStore
from infra.publisher import EventPublisher
from infra.retry import Backoff, Degradation, is_transient, retry_transient_async
from infra.settings import Settings
from schemas.codec import InvalidEvent, dead_letter_event, decode_event, encode, new_event
from schemas.events import DeadLetterReason, EventType, route
from schemas.topics import DEAD_LETTERS, LABELS, VERSION_REQUESTS
from stream_apps.builder.announcer import SOURCE, VersionAnnouncer
from stream_apps.builder.label_log import LABEL_EVENTS, LabelLogReader, LogPosition
from stream_apps.builder.version_builder import VersionBuilder
from stream_apps.raw_topics import raw_topic
from stream_apps.stream_app import configured_stream_app

log = logging.getLogger(__name__)
POLICY_CHECK_S = 30.0
POLICY = "version policy"
_DEAD_LETTER_IDS = uuid.UUID("9f3e6a2b-51c8-4d07-b6e4-0a7d2c8f1e53")


def create_app(settings: Settings, worker_name: str = "builder-1", web_port: int | None = None) -> faust.App:
    app = configured_stream_app(settings, "builder", worker_name, web_port or settings.builder_web_port)
    store = VersionStore(db_sessions(settings))
    builder = VersionBuilder(db_sessions(settings), store,
                             VersionAnnouncer(settings, store, minio_client(settings), EventPublisher(settings)),
                             LabelLogReader(settings), settings.version_snapshot_depth)
    database = ThreadPoolExecutor(1, thread_name_prefix="database")
    degradation = Degradation()  # what this worker waits for (a store down): `/health/` says degraded and why
    labels = raw_topic(app, settings, LABELS)
    requests = raw_topic(app, settings, VERSION_REQUESTS)
    dead_letters = raw_topic(app, settings, DEAD_LETTERS)

    async def blocking(function, *args):
        return await asyncio.get_running_loop().run_in_executor(database, function, *args)

    async def waiting_out(what: str, function, *args):
        """`function(*args)` in the database thread; a passing failure waits (capped backoff) and tries again."""
        return await retry_transient_async(lambda: blocking(function, *args), what=what, degradation=degradation,
                                           backoff=Backoff(cap_s=settings.retry_max_delay_s))

    async def send_dead_letter(event: faust.types.EventT, error: Exception, reason: DeadLetterReason | None) -> None:
        message = event.message
        # The same record refused again after a redelivery gives the same dead letter id.
        letter_id = uuid.uuid5(_DEAD_LETTER_IDS, f"{message.topic}:{message.partition}:{message.offset}")
        letter = dead_letter_event(message.value, error, topic=message.topic, partition=message.partition,
                                   offset=message.offset, key=message.key, service=SOURCE, reason=reason,
                                   event_id=str(letter_id))

        async def send() -> None:
            await (await dead_letters.send(key=route(letter).key.encode(), value=encode(letter)))

        await retry_transient_async(send, what="dead letters (Kafka)", degradation=degradation,
                                    backoff=Backoff(cap_s=settings.retry_max_delay_s))

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

    async def refused(event: faust.types.EventT, error: Exception) -> None:
        """A record the stores refuse for good (not a passing failure): dead-lettered on its own."""
        log.warning("dead-lettering %s:%s, refused: %s", event.message.topic, event.message.offset, error)
        await send_dead_letter(event, error, DeadLetterReason.PROCESSING_ERROR)

    @app.task
    async def announce_interrupted() -> None:
        try:
            names = await waiting_out("announcing interrupted versions", builder.announce_pending)
        except Exception:  # one version that cannot be announced must not stop the worker; its request may retry
            log.exception("could not announce the versions whose announcement was interrupted")
            return
        for name in names:
            log.info("announced %s, whose announcement was interrupted", name)

    @app.agent(labels, concurrency=1)
    async def stage(stream):
        async for event in stream.events():
            decision = await decoded(event, LABEL_EVENTS)
            if decision is None:
                continue
            position = LogPosition(event.message.partition, event.message.offset)
            try:
                await waiting_out("staging labels", builder.stage, decision, position)
            except Exception as error:
                await refused(event, error)

    @app.agent(requests, concurrency=1)
    async def build(stream):
        async for event in stream.events():
            request = await decoded(event, {EventType.CREATE_VERSION_REQUESTED})
            if request is None:
                continue
            try:
                version = await waiting_out("building versions", builder.build, request.payload)
            except Exception as error:  # an unknown parent, a name taken: the request can never succeed
                await refused(event, error)
                continue
            log.info("version %s for request %s: %s", version.name, request.payload["request_id"], version.changes)

    def policy_request() -> dict[str, Any] | None:
        """The payload of the version the policy asks for now, or None."""
        if not (settings.version_every_labels or settings.version_every_hours):
            return None
        staged = store.staged_count()
        if staged == 0:
            return None
        last = builder.last_version_at()
        due_by_labels = settings.version_every_labels and staged >= settings.version_every_labels
        due_by_time = settings.version_every_hours and (
            last is None or datetime.now(UTC) - last >= timedelta(hours=settings.version_every_hours))
        if not (due_by_labels or due_by_time):
            return None
        # One request per state of the version list: a repeated check before it is built asks for the same.
        latest = max((v.id for v in store.versions()), default=0)
        return {"request_id": f"policy-after-{latest}", "requested_by": "version-policy", "trigger": "policy",
                "notes": f"{staged} staged labels"}

    @app.timer(POLICY_CHECK_S)
    async def version_policy() -> None:
        # A store down skips this check only: the next tick checks again (and says why it could not).
        try:
            payload = await blocking(policy_request)
            if payload is not None:
                request = new_event(EventType.CREATE_VERSION_REQUESTED, payload, SOURCE)
                await (await requests.send(key=route(request).key.encode(), value=encode(request)))
        except Exception as error:
            if not is_transient(error):
                log.exception("version policy check failed; checking again in %.0f s", POLICY_CHECK_S)
                return
            degradation.waiting(POLICY, f"{type(error).__name__}: {error}"[:300])
            log.warning("version policy waits for a store: %s; checking again in %.0f s", error, POLICY_CHECK_S)
            return
        degradation.recovered(POLICY)

    @app.page("/health/")
    async def health_page(web, request):
        try:
            staged = await blocking(store.staged_count)
        except Exception as error:
            if not is_transient(error):
                raise
            staged = None  # PostgreSQL down: the report says what the worker waits for
        return web.json({"worker": worker_name, "staged": staged, **degradation.report()})

    return app
