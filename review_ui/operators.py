"""Operator accounts: created from the command line, passwords kept as salted scrypt hashes."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from infra.db.models import Operator

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_PASSWORD = 10
# Compared against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not a password of anyone")


class OperatorError(ValueError):
    """An account request that cannot be carried out; the message says why."""


def check_username(username: str) -> str:
    if not USERNAME.fullmatch(username or ""):
        raise OperatorError("a username is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return username


def create_operator(session: Session, username: str, password: str) -> Operator:
    check_username(username)
    if len(password) < MIN_PASSWORD:
        raise OperatorError(f"a password has at least {MIN_PASSWORD} characters")
    operator = Operator(username=username, password_hash=generate_password_hash(password))
    session.add(operator)
    try:
        session.flush()
    except IntegrityError:
        raise OperatorError(f"an operator named {username!r} already exists (names ignore case)") from None
    return operator


def set_password(session: Session, username: str, password: str) -> Operator:
    operator = find_operator(session, username)
    if operator is None:
        raise OperatorError(f"no operator named {username!r}")
    if len(password) < MIN_PASSWORD:
        raise OperatorError(f"a password has at least {MIN_PASSWORD} characters")
    operator.password_hash = generate_password_hash(password)
    return operator


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
