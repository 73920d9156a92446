"""Operator accounts: created from the command line, passwords kept as salted scrypt hashes.

A labeller queues, labels, discards, undoes and adds classes; an admin also imports, requests and activates
dataset versions, promotes and rolls back models. Every change to an account is audited.
"""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from infra.db import audit
from infra.db.models import Operator

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_PASSWORD = 10
LABELLER, ADMIN = "labeller", "admin"
ROLES = (LABELLER, ADMIN)
# Compared against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not a password of anyone")


class OperatorError(ValueError):
    """An account request that cannot be carried out; the message says why."""


def check_username(username: str) -> str:
    if not USERNAME.fullmatch(username or ""):
        raise OperatorError("a username is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return username


def check_role(role: str) -> str:
    if role not in ROLES:
        raise OperatorError(f"a role is one of {', '.join(ROLES)}, not {role!r}")
    return role


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise OperatorError(f"a password has at least {MIN_PASSWORD} characters")


def _existing(session: Session, username: str) -> Operator:
    operator = find_operator(session, username)
    if operator is None:
        raise OperatorError(f"no operator named {username!r}; see `wastex ui operators`")
    return operator


def create_operator(session: Session, username: str, password: str, *, role: str = LABELLER, by: str) -> Operator:
    """A new account; `by` (who creates it) goes to the audit trail. Labeller unless asked: least privilege."""
    check_username(username)
    check_role(role)
    _check_password(password)
    operator = Operator(username=username, password_hash=generate_password_hash(password), role=role)
    session.add(operator)
    try:
        session.flush()
    except IntegrityError:
        raise OperatorError(f"an operator named {username!r} already exists (names ignore case)") from None
    audit.record(session, by, "operator_created", operator.username, {"role": role})
    return operator


def end_sessions(operator: Operator) -> None:
    """End every open session of the operator at its next request (the caller commits the row).

    Each session carries the epoch it was opened in; the sign-in check refuses a session whose epoch is old.
    """
    operator.session_epoch = (operator.session_epoch or 0) + 1


def set_password(session: Session, username: str, password: str, *, by: str) -> Operator:
    """A new password; it ends every session opened with the old one."""
    operator = _existing(session, username)
    _check_password(password)
    operator.password_hash = generate_password_hash(password)
    end_sessions(operator)
    audit.record(session, by, "password_reset", operator.username)
    return operator


def set_role(session: Session, username: str, role: str, *, by: str) -> Operator:
    """Change the role; open sessions see it at their next request (the role is read per request)."""
    operator = _existing(session, username)
    before = operator.role
    if check_role(role) == before:  # nothing changes, so nothing is recorded
        return operator
    operator.role = role
    audit.record(session, by, "role_changed", operator.username, {"from": before, "to": role})
    return operator


def set_active(session: Session, username: str, active: bool, *, by: str) -> Operator:
    """Deactivate (ending every session; the account can no longer sign in) or activate again."""
    operator = _existing(session, username)
    operator.active = active
    if not active:
        end_sessions(operator)
    audit.record(session, by, "operator_activated" if active else "operator_deactivated", operator.username)
    return operator


def log_out_everywhere(session: Session, username: str, *, by: str) -> Operator:
    """End every open session of the operator (they sign in again) and record who did it."""
    operator = _existing(session, username)
    end_sessions(operator)
    audit.record(session, by, "sessions_ended", operator.username, {"session_epoch": operator.session_epoch})
    return operator


def list_operators(session: Session) -> list[Operator]:
    return list(session.scalars(select(Operator).order_by(func.lower(Operator.username))))


def find_operator(session: Session, username: str) -> Operator | None:
    return session.scalars(select(Operator).where(func.lower(Operator.username) == username.lower())).one_or_none()


def authenticate(session: Session, username: str, password: str) -> Operator | None:
    """The active operator with these credentials, or None (in about the same time either way)."""
    operator = find_operator(session, username) if USERNAME.fullmatch(username or "") else None
    if operator is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(operator.password_hash, password) or not operator.active:
        return None
    return operator
