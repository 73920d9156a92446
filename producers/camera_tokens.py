"""Camera tokens: the bearer tokens of the HTTP ingest, each fixing the camera and site it posts as.

A token is shown once, when it is created; only its sha256 and its first characters (to tell tokens apart in a
list) are stored. The ingest looks a token up on every request, so a revocation takes effect at once.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from infra.db.models import CameraToken
from producers.upload_checks import UploadRefused, check_identifier

TOKEN_PREFIX = "wxc_"
LISTED_CHARS = len(TOKEN_PREFIX) + 8  # what `token list` shows and `token revoke` takes
LAST_USED_EVERY = timedelta(minutes=1)  # a busy camera would otherwise write its row on every upload


class CameraTokenError(ValueError):
    """A token command that cannot be carried out as asked; the message says why."""


class TokenRejected(Exception):
    """A presented token that is unknown or revoked: the ingest answers 401."""


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once, never stored
    prefix: str
    camera_id: str
    site_id: str


@dataclass(frozen=True)
class CameraIdentity:
    """Who a valid token posts as."""

    camera_id: str
    site_id: str
    prefix: str


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, camera_id: str, site_id: str, created_by: str) -> IssuedToken:
    """A new token for the camera at the site (a camera may hold several, e.g. while one is being replaced)."""
    try:
        check_identifier("camera", camera_id)
        check_identifier("site", site_id)
    except UploadRefused as refusal:
        raise CameraTokenError(refusal.message) from None
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    prefix = token[:LISTED_CHARS]
    session.add(CameraToken(token_sha256=token_digest(token), prefix=prefix, camera_id=camera_id, site_id=site_id,
                            created_by=created_by[:64]))
    session.flush()
    return IssuedToken(token, prefix, camera_id, site_id)


def list_tokens(session: Session) -> list[CameraToken]:
    """Every token, revoked ones included, oldest first."""
    return list(session.scalars(select(CameraToken).order_by(CameraToken.created_at, CameraToken.id)))


def revoke_tokens(session: Session, *, prefix: str | None = None, camera_id: str | None = None) -> list[CameraToken]:
    """Revoke the active tokens with this listed prefix, or all of a camera's; the tokens revoked now."""
    if (prefix is None) == (camera_id is None):
        raise CameraTokenError("name the token by its prefix (as `wastex ingest token list` shows it) or give "
                               "--camera to revoke every token of a camera")
    query = select(CameraToken).where(CameraToken.revoked_at.is_(None))
    query = query.where(CameraToken.prefix == prefix) if prefix is not None else query.where(
        CameraToken.camera_id == camera_id)
    tokens = list(session.scalars(query.with_for_update()))
    if not tokens:
        what = f"prefix {prefix!r}" if prefix is not None else f"camera {camera_id!r}"
        raise CameraTokenError(f"no active token with {what}; see `wastex ingest token list`")
    for token in tokens:
        token.revoked_at = func.now()
    session.flush()
    return tokens


class CameraTokens:
    """Checks presented tokens against the database on every request and notes when each was last used.

    Database errors are raised as they are: the caller tells a passing outage (503) from a bug.
    """

    def __init__(self, sessions: sessionmaker, clock: Callable[[], float] = time.monotonic) -> None:
        self._sessions = sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._noted: dict[int, float] = {}  # token id -> when this process last wrote its last_used_at

    def authenticate(self, token: str) -> CameraIdentity:
        """The camera a token posts as; raises TokenRejected for an unknown or revoked token."""
        with self._sessions() as session, session.begin():
            row = session.scalars(select(CameraToken).where(CameraToken.token_sha256 == token_digest(token))
                                  ).one_or_none()
            if row is None:
                raise TokenRejected("unknown camera token: create one with `wastex ingest token create`")
            if row.revoked_at is not None:
                raise TokenRejected(f"camera token {row.prefix}... was revoked; ask for a new one")
            if self._due(row.id):
                stale = func.now() - LAST_USED_EVERY
                session.execute(update(CameraToken)
                                .where(CameraToken.id == row.id,
                                       or_(CameraToken.last_used_at.is_(None), CameraToken.last_used_at < stale))
                                .values(last_used_at=func.now()))
            return CameraIdentity(row.camera_id, row.site_id, row.prefix)

    def _due(self, token_id: int) -> bool:
        """Whether this process should write the token's last use now (at most once a minute)."""
        now = self._clock()
        with self._lock:
            if now - self._noted.get(token_id, -float("inf")) < LAST_USED_EVERY.total_seconds():
                return False
            self._noted[token_id] = now
            return True
