"""An operator at the review queue: every few seconds, the oldest pending OOD item is labelled with its
predicted class through the review UI's own action code (one transaction: item, undo record, outbox).

A database outage makes the client retry the same action (same action_id, so at most one effect), as the
review page does after a failed request.
"""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from infra.db.models import ReviewItem
from infra.retry import Backoff, retry_transient
from review_ui.actions import ActionResult, label_items, run_action

OPERATOR = "bench-operator"


class LabellingClient:
    def __init__(self, sessions: sessionmaker, every_s: float = 2.0, backoff_cap_s: float = 30.0) -> None:
        self._sessions = sessions
        self._every_s = every_s
        self._backoff_cap_s = backoff_cap_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labelling-client", daemon=True)
        self.phase = "start"
        self.label_events: dict[str, str] = {}  # label-log event id -> phase of the action
        self.errors: list[str] = []  # actions refused for a reason other than a passing failure

    def start(self) -> LabellingClient:
        self._thread.start()
        return self

    def _oldest_pending(self) -> ReviewItem | None:
        with self._sessions() as session:
            return session.scalars(select(ReviewItem).where(ReviewItem.status == "pending")
                                   .order_by(ReviewItem.id).limit(1)).first()

    def label_one(self) -> ActionResult | None:
        """Label the oldest pending item with its predicted class; None when the queue is empty."""
        backoff = Backoff(cap_s=self._backoff_cap_s)
        item = retry_transient(self._oldest_pending, what="labelling client: queue", stop=self._stop,
                               backoff=backoff)
        if item is None:
            return None
        phase, action_id = self.phase, f"bench-{uuid.uuid4().hex}"
        result = retry_transient(
            lambda: run_action(self._sessions, label_items, OPERATOR, action_id, [item.id], item.predicted_class),
            what="labelling client: label", stop=self._stop, backoff=backoff)
        self.label_events.update(dict.fromkeys(result.event_ids, phase))
        return result

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.label_one()
            except InterruptedError:
                return
            except Exception as error:  # the client goes on with the next item, as an operator would
                self.errors.append(f"{type(error).__name__}: {error}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
