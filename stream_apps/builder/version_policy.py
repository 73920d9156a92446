"""The version policy (every N staged labels, every T hours): a timer that requests a version like anyone else."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import faust

from infra.db.dataset_versions import VersionStore
from infra.retry import is_transient
from infra.settings import Settings
from schemas.codec import encode, new_event
from schemas.events import EventType, route
from schemas.topics import VERSION_REQUESTS
from stream_apps.builder.announcer import SOURCE
from stream_apps.builder.record_handling import BuilderRecords
from stream_apps.builder.version_builder import VersionBuilder
from stream_apps.raw_topics import raw_topic

log = logging.getLogger(__name__)
POLICY_CHECK_S = 30.0
POLICY = "version policy"


def policy_request(settings: Settings, store: VersionStore, builder: VersionBuilder) -> dict[str, Any] | None:
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


def add_version_policy(app: faust.App, settings: Settings, store: VersionStore, builder: VersionBuilder,
                       records: BuilderRecords) -> None:
    requests = raw_topic(app, settings, VERSION_REQUESTS)

    @app.timer(POLICY_CHECK_S)
    async def version_policy() -> None:
        # A store down skips this check only: the next tick checks again (and says why it could not).
        try:
            payload = await records.blocking(policy_request, settings, store, builder)
            if payload is not None:
                request = new_event(EventType.CREATE_VERSION_REQUESTED, payload, SOURCE)
                await (await requests.send(key=route(request).key.encode(), value=encode(request)))
        except Exception as error:
            if not is_transient(error):
                log.exception("version policy check failed; checking again in %.0f s", POLICY_CHECK_S)
                return
            records.degradation.waiting(POLICY, f"{type(error).__name__}: {error}"[:300])
            log.warning("version policy waits for a store: %s; checking again in %.0f s", error, POLICY_CHECK_S)
            return
        records.degradation.recovered(POLICY)
