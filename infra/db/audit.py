"""The admin audit trail: who promoted, rolled back, activated, requested, imported or changed an operator.

A row is written in the same transaction as the change it records, so a change never stands without its row.
Rows are only ever added.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from infra.db.models import AdminAudit

# The actions each page shows; the trainer's automatic promotion is a production move like the others.
MODEL_ACTIONS = ("promote", "rollback", "auto-promote")
DATASET_ACTIONS = ("activate", "version_request", "import")
OPERATOR_ACTIONS = ("operator_created", "password_reset", "role_changed", "operator_deactivated",
                    "operator_activated", "sessions_ended")
MAX_LIMIT = 500


def record(session: Session, operator: str, action: str, subject: str, detail: dict[str, Any] | None = None
           ) -> AdminAudit:
    """Add one audit row to the session's transaction (the caller commits it with the change)."""
    row = AdminAudit(operator=operator[:64], action=action, subject=subject[:255], detail=detail or {})
    session.add(row)
    return row


def recent(session: Session, *, actions: Iterable[str] | None = None, subject: str | None = None,
           limit: int = 50) -> list[AdminAudit]:
    """The newest rows first, optionally only these actions and this subject."""
    query = select(AdminAudit).order_by(AdminAudit.at.desc(), AdminAudit.id.desc())
    if actions is not None:
        query = query.where(AdminAudit.action.in_(list(actions)))
    if subject is not None:
        query = query.where(AdminAudit.subject == subject)
    return list(session.scalars(query.limit(max(1, min(limit, MAX_LIMIT)))))


def cli_operator() -> str:
    """Who acts from the command line: the OS account, since a shell user has no review UI session."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # a container user without a passwd entry
        return "cli:unknown"


def audit_document(row: AdminAudit) -> dict[str, Any]:
    return {"id": row.id, "at": row.at.isoformat() if row.at else None, "operator": row.operator,
            "action": row.action, "subject": row.subject, "detail": row.detail}
