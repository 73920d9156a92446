"""The builder's agents: the label log into staging, version requests into delta versions.

- `stage` reads the label log (LabelAssigned, ImageDiscarded, LabelRetracted) and keeps the latest decision
  per image in PostgreSQL; the record's offset makes a redelivery a no-op.
- `build` answers each CreateVersionRequested with exactly one version (request id unique in PostgreSQL),
  after staging the label log up to its end, so every decision sent before the request is in it,
  and one DatasetVersionCreated (event id derived from the request id).
- at start, versions whose announcement a crash interrupted are announced.
"""

from __future__ import annotations

import logging

import faust

from infra.settings import Settings
from schemas.events import EventType
from schemas.topics import LABELS, VERSION_REQUESTS
from stream_apps.builder.label_log import LABEL_EVENTS, LogPosition
from stream_apps.builder.record_handling import BuilderRecords
from stream_apps.builder.version_builder import VersionBuilder
from stream_apps.raw_topics import raw_topic

log = logging.getLogger(__name__)


def add_version_agents(app: faust.App, settings: Settings, builder: VersionBuilder, records: BuilderRecords) -> None:
    labels = raw_topic(app, settings, LABELS)
    requests = raw_topic(app, settings, VERSION_REQUESTS)

    @app.task
    async def announce_interrupted() -> None:
        try:
            names = await records.waiting_out("announcing interrupted versions", builder.announce_pending)
        except Exception:  # one version that cannot be announced must not stop the worker; its request may retry
            log.exception("could not announce the versions whose announcement was interrupted")
            return
        for name in names:
            log.info("announced %s, whose announcement was interrupted", name)

    @app.agent(labels, concurrency=1)
    async def stage(stream):
        async for event in stream.events():
            decision = await records.decoded(event, LABEL_EVENTS)
            if decision is None:
                continue
            position = LogPosition(event.message.partition, event.message.offset)
            try:
                await records.waiting_out("staging labels", builder.stage, decision, position)
            except Exception as error:
                await records.refused(event, error)

    @app.agent(requests, concurrency=1)
    async def build(stream):
        async for event in stream.events():
            request = await records.decoded(event, {EventType.CREATE_VERSION_REQUESTED})
            if request is None:
                continue
            try:
                version = await records.waiting_out("building versions", builder.build, request.payload)
            except Exception as error:  # an unknown parent, a name taken: the request can never succeed
                await records.refused(event, error)
                continue
            log.info("version %s for request %s: %s", version.name, request.payload["request_id"], version.changes)
