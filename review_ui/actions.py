"""Operator actions on the review queue: label, mark reviewed, discard, bulk label, undo.

Each action runs in one transaction that changes the items, records what it changed (for undo) and puts
its label-log events in the outbox. The client names every action with an action_id: the same action
sent twice returns the first result and has one effect; asking for a state an item already has changes
nothing and emits nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from infra.db.models import ReviewAction, ReviewDecision, ReviewItem
from review_ui.class_registry import ClassNameError, ensure_class, find_class, normalise_class_name
from review_ui.label_events import LabelContext, image_discarded, label_assigned, label_retracted
from review_ui.outbox import enqueue
from schemas.events import Event

ACTION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,47}")
MAX_BULK = 500
DEFAULT_DISCARD_REASON = "not waste"
UNDO_RESTORE_REASON = "restored by undo"


class ActionError(Exception):
    """An action that cannot be carried out; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ActionResult:
    action_id: str
    kind: str
    changed: list[ReviewItem] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    label: str | None = None
    new_class: bool = False
    replayed: bool = False


@dataclass(frozen=True)
class _Target:
    status: str
    label: str | None


def check_action_id(action_id: str | None) -> str:
    if not action_id or not ACTION_ID.fullmatch(action_id):
        raise ActionError(400, "action_id must be 8 to 48 letters, digits or . _ : - (a fresh UUID per action)")
    return action_id


def _replay(session: Session, action: ReviewAction, operator: str) -> ActionResult:
    if action.operator != operator:
        raise ActionError(409, f"action_id {action.action_id} was already used by another operator")
    items = {item.id: item for item in session.scalars(
        select(ReviewItem).where(ReviewItem.id.in_([d.item_id for d in action.decisions])))}
    return ActionResult(action.action_id, action.kind, [items[d.item_id] for d in action.decisions], [],
                        [d.event_id for d in action.decisions], action.label, action.new_class, replayed=True)


def _existing(session: Session, action_id: str) -> ReviewAction | None:
    return session.scalars(select(ReviewAction).where(ReviewAction.action_id == action_id)).one_or_none()


def _locked_items(session: Session, item_ids: Sequence[int]) -> list[ReviewItem]:
    ids = list(dict.fromkeys(item_ids))
    if not ids:
        raise ActionError(400, "no items selected")
    if len(ids) > MAX_BULK:
        raise ActionError(400, f"at most {MAX_BULK} items per action")
    items = list(session.scalars(select(ReviewItem).where(ReviewItem.id.in_(ids)).order_by(ReviewItem.id)
                                 .with_for_update()))
    missing = sorted(set(ids) - {item.id for item in items})
    if missing:
        raise ActionError(404, f"no review item with id {', '.join(map(str, missing))}")
    return items


def _event_for(item: ReviewItem, target: _Target, operator: str, action_key: str, new_class: bool,
               reason: str, retracted_event_id: str | None) -> Event:
    context = LabelContext.of_item(item)
    if target.status == "labelled":
        assert target.label is not None
        return label_assigned(context, target.label, operator, action_key, new_class=new_class)
    if target.status == "discarded":
        return image_discarded(context, reason, operator, action_key)
    assert retracted_event_id is not None
    return label_retracted(context, retracted_event_id, operator, action_key)


def _apply(session: Session, action: ReviewAction, item: ReviewItem, target: _Target, *, reason: str = "",
           retracted_event_id: str | None = None) -> Event:
    """Move one item to its target state, record the decision and queue its event."""
    action_key = f"{action.action_id}/{item.id}"
    event = _event_for(item, target, action.operator, action_key, action.new_class, reason, retracted_event_id)
    session.add(ReviewDecision(action=action, item_id=item.id, previous_status=item.status,
                               previous_label=item.label, new_status=target.status, new_label=target.label,
                               event_id=event.event_id))
    item.status, item.label = target.status, target.label
    pending = target.status == "pending"
    item.decided_by = None if pending else action.operator
    item.decided_at = None if pending else datetime.now(UTC)
    enqueue(session, event)
    return event


def _decide(session: Session, action: ReviewAction, items: list[ReviewItem], targets: dict[int, _Target],
            reason: str = "") -> ActionResult:
    result = ActionResult(action.action_id, action.kind, label=action.label, new_class=action.new_class)
    for item in items:
        target = targets[item.id]
        if (item.status, item.label) == (target.status, target.label):
            result.unchanged.append(item.id)
            continue
        result.event_ids.append(_apply(session, action, item, target, reason=reason).event_id)
        result.changed.append(item)
    return result


def _resolve_label(session: Session, raw_label: str, create_class: bool, operator: str) -> tuple[str, bool]:
    try:
        name = normalise_class_name(raw_label)
        if create_class:
            found, created = ensure_class(session, name, operator)
            return found.name, created
    except ClassNameError as error:
        raise ActionError(400, str(error)) from None
    found = find_class(session, name)
    if found is None:
        raise ActionError(400, f"no class named {name!r}; create it first (or send new_class: true)")
    return found.name, False


def label_items(session: Session, operator: str, action_id: str, item_ids: Sequence[int], raw_label: str, *,
                create_class: bool = False) -> ActionResult:
    """Give one or many items a class (an existing one, or one this action creates)."""
    action_id = check_action_id(action_id)
    if (done := _existing(session, action_id)) is not None:
        return _replay(session, done, operator)
    label, created = _resolve_label(session, raw_label, create_class, operator)
    items = _locked_items(session, item_ids)
    action = ReviewAction(action_id=action_id, operator=operator, kind="label", label=label, new_class=created)
    session.add(action)
    return _decide(session, action, items, {item.id: _Target("labelled", label) for item in items})


def mark_reviewed(session: Session, operator: str, action_id: str, item_id: int) -> ActionResult:
    """The operator confirms the model's predicted class: a label like any other."""
    action_id = check_action_id(action_id)
    if (done := _existing(session, action_id)) is not None:
        return _replay(session, done, operator)
    (item,) = _locked_items(session, [item_id])
    label, created = _resolve_label(session, item.predicted_class, True, operator)
    action = ReviewAction(action_id=action_id, operator=operator, kind="review", label=label, new_class=created)
    session.add(action)
    return _decide(session, action, [item], {item.id: _Target("labelled", label)})


def discard_items(session: Session, operator: str, action_id: str, item_ids: Sequence[int],
                  reason: str = DEFAULT_DISCARD_REASON) -> ActionResult:
    """Not waste (or unusable): the images leave the staged labels."""
    action_id = check_action_id(action_id)
    reason = " ".join((reason or DEFAULT_DISCARD_REASON).split())
    if len(reason) > 500:
        raise ActionError(400, "a discard reason has at most 500 characters")
    if (done := _existing(session, action_id)) is not None:
        return _replay(session, done, operator)
    items = _locked_items(session, item_ids)
    action = ReviewAction(action_id=action_id, operator=operator, kind="discard", new_class=False)
    session.add(action)
    return _decide(session, action, items, {item.id: _Target("discarded", None) for item in items}, reason)


def undo_last(session: Session, operator: str, action_id: str) -> ActionResult:
    """Undo this operator's latest action that is not undone yet: each item returns to its state before.

    Refused (409) when another operator changed one of the items since: undo never overwrites their work.
    """
    action_id = check_action_id(action_id)
    if (done := _existing(session, action_id)) is not None:
        return _replay(session, done, operator)
    has_decisions = exists().where(ReviewDecision.action_id == ReviewAction.id)
    target = session.scalars(
        select(ReviewAction).where(ReviewAction.operator == operator, ReviewAction.kind != "undo",
                                   ReviewAction.undone.is_(False), has_decisions)
        .order_by(ReviewAction.id.desc()).limit(1).with_for_update()
    ).first()
    if target is None:
        raise ActionError(409, "nothing to undo")
    items = {item.id: item for item in _locked_items(session, [d.item_id for d in target.decisions])}
    for decision in target.decisions:
        item = items[decision.item_id]
        if (item.status, item.label) != (decision.new_status, decision.new_label):
            raise ActionError(409, f"image {item.id} changed after that action (now {item.status}"
                                   f"{' as ' + item.label if item.label else ''} by {item.decided_by}); "
                                   "undo refused so their decision stays")
    undo = ReviewAction(action_id=action_id, operator=operator, kind="undo", new_class=False,
                        undoes_action_id=target.id)
    session.add(undo)
    target.undone = True
    result = ActionResult(action_id, "undo", label=target.label)
    for decision in target.decisions:
        item = items[decision.item_id]
        restored = _Target(decision.previous_status, decision.previous_label)
        event = _apply(session, undo, item, restored, reason=UNDO_RESTORE_REASON,
                       retracted_event_id=decision.event_id)
        result.event_ids.append(event.event_id)
        result.changed.append(item)
    return result


def run_action(sessions: sessionmaker, operation: Callable[..., ActionResult], *args: Any,
               **kwargs: Any) -> ActionResult:
    """Run an action in its own transaction; two concurrent requests with one action_id share one result."""
    try:
        with sessions() as session, session.begin():
            return operation(session, *args, **kwargs)
    except IntegrityError:
        # The other request committed the same action_id first: answer with what it did.
        with sessions() as session, session.begin():
            return operation(session, *args, **kwargs)
