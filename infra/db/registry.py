"""The model registry's production pointer, which several units read and move: promotions and rollbacks."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from infra.clients import db_sessions
from infra.db import audit
from infra.db.models import ModelVersion
from infra.publisher import EventPublisher
from infra.settings import Settings
from schemas.codec import new_event
from schemas.events import Event, EventType
from schemas.model_artefact import KERAS_FILE, SERVING_FILE

# librdkafka retries an unacknowledged event for 5 minutes by default: a promotion reported as failed (and
# rolled back) could still be announced later. Giving up well before the flush timeout makes a failure final.
DELIVERY_TIMEOUT_MS = 10_000
FLUSH_TIMEOUT_S = 30.0


class RegistryError(ValueError):
    """A registry request that cannot be carried out (unknown version, class count mismatch, ...)."""


def production_model(settings: Settings) -> ModelVersion | None:
    """The row of the model that serves now, if any."""
    with db_sessions(settings)() as session:
        return session.scalars(select(ModelVersion).where(ModelVersion.status == "production")).one_or_none()


def promote(settings: Settings, version: str, promoted_by: str, *, source: str, action: str = "promote",
            audited_as: str | None = None) -> Event:
    """Make `version` the production model and announce it on models.promoted.

    The registry change commits only after Kafka acknowledged the announcement, and a failed announcement is
    final (PublishError, nothing changed). Workers take what to serve from the registry, not from the event.
    The audit trail names `audited_as` (default `promoted_by`): the command line names its OS user there.
    """
    Session = db_sessions(settings)
    with Session.begin() as session:
        target = session.scalars(select(ModelVersion).where(ModelVersion.version == version)
                                 .with_for_update()).one_or_none()
        if target is None:
            raise RegistryError(f"no model version {version!r} in the registry")
        if target.artefact_digest is None:
            raise RegistryError(f"model version {version!r} was registered without a content digest, so no worker "
                                f"would serve it: register the model again under a new name")
        previous = session.scalars(select(ModelVersion).where(ModelVersion.status == "production")
                                   .with_for_update()).one_or_none()
        if previous is not None and previous.version != version:
            previous.status = "retired"
            session.flush()  # first: the one-production index refuses a second production row even mid-flush
        target.status = "production"
        target.promoted_at = datetime.now(UTC)
        event = new_event(EventType.MODEL_PROMOTED, {
            "model_version": target.version,
            "artefact_uri": f"{target.artefact_uri}/{KERAS_FILE}",
            "artefact_digest": target.artefact_digest,
            "serving_uri": f"{target.artefact_uri}/{SERVING_FILE}" if target.has_serving_export else None,
            "classes": list(target.classes),
            "thresholds": {"tau_energy": target.tau_energy, "tau_softmax": target.tau_softmax},
            "metrics": {k: float(v) for k, v in target.metrics.items() if isinstance(v, int | float)},
            "promoted_by": promoted_by,
            "previous_model_version": previous.version if previous is not None else None,
            "action": action,
        }, source)
        audit.record(session, audited_as or promoted_by, action, target.version,
                     {"previous": event.payload["previous_model_version"], "promoted_by": promoted_by,
                      "digest": target.artefact_digest})
        # Announce before the transaction commits: if the broker is down, the promotion is not recorded.
        publisher = EventPublisher(settings, **{"message.timeout.ms": DELIVERY_TIMEOUT_MS})
        publisher.publish(event)
        publisher.flush(FLUSH_TIMEOUT_S)
    return event


def rollback(settings: Settings, to_version: str | None, promoted_by: str, *, source: str,
             audited_as: str | None = None) -> Event:
    """Serve an earlier model again: `to_version`, else the one promoted most recently before the current."""
    if to_version is None:
        with db_sessions(settings)() as session:
            earlier = session.scalars(select(ModelVersion)
                                      .where(ModelVersion.status != "production", ModelVersion.promoted_at.is_not(None))
                                      .order_by(ModelVersion.promoted_at.desc()).limit(1)).one_or_none()
        if earlier is None:
            raise RegistryError("no earlier production model to roll back to")
        to_version = earlier.version
    return promote(settings, to_version, promoted_by, source=source, action="rollback", audited_as=audited_as)
