"""The label-log events the review UI emits: LabelAssigned, ImageDiscarded, LabelRetracted.

Event ids derive from the action key, so a decision can only ever be announced under one id. A LabelAssigned
of a review item says where the image was captured (site_id) and which kind of item was answered (review_kind:
ood or audit); an import's says neither (site_id null, no review_kind).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from infra.db.models import ReviewItem
from schemas.codec import new_event
from schemas.events import Event, EventType

SOURCE = "review_ui"
_EVENT_NAMESPACE = uuid.UUID("5d0b8c2e-3f4a-4b6c-9d8e-7f6a5b4c3d2e")


@dataclass(frozen=True)
class LabelContext:
    """What every label event says about the image and where it came from."""

    bucket: str
    object_key: str
    sha256: str
    flagged_by_model_version: str | None = None
    source_event_id: str | None = None
    site_id: str | None = None
    review_kind: str | None = None  # ood | audit; None for imports

    @classmethod
    def of_item(cls, item: ReviewItem) -> LabelContext:
        return cls(item.bucket, item.object_key, item.sha256, item.model_version, item.source_event_id,
                   item.site_id, item.kind)

    def payload(self, operator: str, action_key: str) -> dict[str, Any]:
        return {
            "image": {"bucket": self.bucket, "object_key": self.object_key, "sha256": self.sha256},
            "operator_id": operator,
            "flagged_by_model_version": self.flagged_by_model_version,
            "source_event_id": self.source_event_id,
            "action_id": action_key,
        }


def event_id_for(action_key: str) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, action_key))


def label_assigned(context: LabelContext, label: str, operator: str, action_key: str, *, new_class: bool) -> Event:
    payload = {**context.payload(operator, action_key), "label": label, "new_class": new_class,
               "site_id": context.site_id}
    if context.review_kind is not None:
        payload["review_kind"] = context.review_kind
    return new_event(EventType.LABEL_ASSIGNED, payload, SOURCE, event_id=event_id_for(action_key))


def image_discarded(context: LabelContext, reason: str, operator: str, action_key: str) -> Event:
    payload = {**context.payload(operator, action_key), "reason": reason}
    return new_event(EventType.IMAGE_DISCARDED, payload, SOURCE, event_id=event_id_for(action_key))


def label_retracted(context: LabelContext, retracted_event_id: str, operator: str, action_key: str) -> Event:
    payload = {**context.payload(operator, action_key), "retracted_event_id": retracted_event_id}
    return new_event(EventType.LABEL_RETRACTED, payload, SOURCE, event_id=event_id_for(action_key))
