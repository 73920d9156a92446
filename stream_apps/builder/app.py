"""The version builder Faust app: its stages registered on one StreamApp.

- version_agents.py: the label log into staging, version requests into delta versions, interrupted
  announcements finished at start;
- version_policy.py: a timer that requests a version when the policy says one is due;
- record_handling.py: the database thread, waiting out passing failures, dead-lettering what can never succeed;
- `/health/`: the staged decisions and what the worker waits for;
- `/metrics` (unless WASTEX_METRICS is off): builder_metrics.py's figures.
"""

from __future__ import annotations

import faust

from infra.clients import db_sessions, minio_client
from infra.db.dataset_versions import VersionStore
from infra.publisher import EventPublisher
from infra.retry import Degradation, is_transient
from infra.settings import Settings
from schemas.topics import DEAD_LETTERS
from stream_apps.builder.announcer import VersionAnnouncer
from stream_apps.builder.builder_metrics import builder_metrics
from stream_apps.builder.label_log import LabelLogReader
from stream_apps.builder.record_handling import BuilderRecords
from stream_apps.builder.version_agents import add_version_agents
from stream_apps.builder.version_builder import VersionBuilder
from stream_apps.builder.version_policy import add_version_policy
from stream_apps.metrics_page import serve_metrics
from stream_apps.raw_topics import raw_topic
from stream_apps.stream_app import configured_stream_app


def create_app(settings: Settings, worker_name: str = "builder-1", web_port: int | None = None) -> faust.App:
    app = configured_stream_app(settings, "builder", worker_name, web_port or settings.builder_web_port)
    store = VersionStore(db_sessions(settings))
    builder = VersionBuilder(db_sessions(settings), store,
                             VersionAnnouncer(settings, store, minio_client(settings), EventPublisher(settings)),
                             LabelLogReader(settings), settings.version_snapshot_depth, builder_metrics(settings))
    degradation = Degradation()  # what this worker waits for (a store down): `/health/` says degraded and why
    records = BuilderRecords(settings, raw_topic(app, settings, DEAD_LETTERS), degradation)
    add_version_agents(app, settings, builder, records)
    add_version_policy(app, settings, store, builder, records)
    serve_metrics(app, settings, "builder", worker_name)

    @app.page("/health/")
    async def health_page(web, request):
        try:
            staged = await records.blocking(store.staged_count)
        except Exception as error:
            if not is_transient(error):
                raise
            staged = None  # PostgreSQL down: the report says what the worker waits for
        return web.json({"worker": worker_name, "staged": staged, **degradation.report()})

    return app
