"""The sign-in throttle: failed sign-ins lock the account and the client address for a while.

Failures are rows of `sign_in_failures` (the name as typed, lower-cased, and the client address; never the
password), so every UI process sharing the database sees them, and they are timed by the database's clock.
A key (an account name or an address) with `limit` failures within the window is locked until the oldest of them
leaves the window. Every further `limit` failures within the longest lock double the window of that key, up to
the longest lock: an attacker's sustained rate falls to `limit` guesses per longest lock. A locked attempt is
refused before the password is checked, so it costs no scrypt hash, and even the right password is refused.
A success clears the failures of its account (not of its address: one operator's success behind an office NAT
says nothing about the other clients there).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from infra.db.models import SignInFailure
from infra.settings import Settings

log = logging.getLogger(__name__)
COLUMN_WIDTH = 64  # of sign_in_failures.username and .client
PRUNE_EVERY_S = 60.0
MAX_DOUBLINGS = 32  # beyond this the longest lock has long been reached


class SignInBusy(Exception):
    """As many password checks as allowed are running: the caller answers 503 instead of queueing."""


@dataclass(frozen=True)
class Refusal:
    """A locked account or address: refused for `retry_after_s` more seconds."""

    retry_after_s: int
    locked: str  # "account" | "address"

    @property
    def message(self) -> str:
        whose = "for this account" if self.locked == "account" else "from this address"
        return f"too many failed sign-ins {whose}: try again in {self.retry_after_s} s"


@dataclass(frozen=True)
class ThrottlePolicy:
    account_limit: int
    client_limit: int
    window_s: float
    max_lock_s: float
    concurrency: int

    def __post_init__(self) -> None:
        for name, value, setting in (
                ("account_limit", self.account_limit, "WASTEX_UI_SIGNIN_MAX_FAILURES"),
                ("client_limit", self.client_limit, "WASTEX_UI_SIGNIN_MAX_CLIENT_FAILURES"),
                ("window_s", self.window_s, "WASTEX_UI_SIGNIN_WINDOW_S"),
                ("concurrency", self.concurrency, "WASTEX_UI_SIGNIN_CONCURRENCY")):
            if value <= 0:
                raise ValueError(f"{setting} must be above 0, got {value!r} ({name})")
        if self.max_lock_s < self.window_s:
            raise ValueError(f"WASTEX_UI_SIGNIN_MAX_LOCK_S ({self.max_lock_s:g}) must be at least "
                             f"WASTEX_UI_SIGNIN_WINDOW_S ({self.window_s:g})")

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottlePolicy:
        return cls(account_limit=settings.ui_signin_max_failures, client_limit=settings.ui_signin_max_client_failures,
                   window_s=settings.ui_signin_window_s, max_lock_s=settings.ui_signin_max_lock_s,
                   concurrency=settings.ui_signin_concurrency)

    def lock_s(self, failures: int, limit: int) -> float:
        """The window of a key with `failures` within the longest lock: doubled for each further `limit`, capped."""
        doublings = min(MAX_DOUBLINGS, max(0, failures // limit - 1))
        return min(self.max_lock_s, self.window_s * 2**doublings)


def account_key(username: str) -> str:
    return username.lower()[:COLUMN_WIDTH]


class SignInThrottle:
    """Decides whether a sign-in may be tried, records failures, and bounds the password checks running at once."""

    def __init__(self, sessions: sessionmaker, policy: ThrottlePolicy) -> None:
        self._sessions = sessions
        self.policy = policy
        self._checks = threading.BoundedSemaphore(policy.concurrency)
        self._next_prune = 0.0

    def refusal(self, username: str, client: str) -> Refusal | None:
        """Why this attempt is refused without checking the password, or None when it may go ahead."""
        account, address = account_key(username), client[:COLUMN_WIDTH]
        with self._sessions() as db:
            now: datetime = db.scalar(select(func.now()))
            waits = [(self._locked_for(db, now, SignInFailure.username, account, self.policy.account_limit),
                      "account"),
                     (self._locked_for(db, now, SignInFailure.client, address, self.policy.client_limit), "address")]
        wait, locked = max(waits, key=lambda pair: pair[0])
        if wait <= 0:
            return None
        refusal = Refusal(retry_after_s=max(1, math.ceil(wait)), locked=locked)
        log.warning("sign-in refused for %r from %s: %s", account, address, refusal.message)
        return refusal

    def _locked_for(self, db: Session, now: datetime, column: InstrumentedAttribute, key: str, limit: int) -> float:
        """Seconds the key stays locked (0: not locked)."""
        lookback = now - timedelta(seconds=self.policy.max_lock_s)
        failures = db.scalar(select(func.count()).where(column == key, SignInFailure.failed_at > lookback))
        if failures < limit:
            return 0.0
        # The limit-th latest failure: the lock ends when it leaves the key's window.
        oldest_counted = db.scalar(select(SignInFailure.failed_at).where(column == key)
                                   .order_by(SignInFailure.failed_at.desc()).offset(limit - 1).limit(1))
        until = oldest_counted + timedelta(seconds=self.policy.lock_s(failures, limit))
        return max(0.0, (until - now).total_seconds())

    def record_failure(self, username: str, client: str) -> None:
        """Note a failed sign-in (never the password) and log it with the counts that the throttle goes by."""
        account, address = account_key(username), client[:COLUMN_WIDTH]
        window = timedelta(seconds=self.policy.window_s)
        with self._sessions() as db, db.begin():
            db.add(SignInFailure(username=account, client=address))
            db.flush()
            since = db.scalar(select(func.now())) - window
            of_account = db.scalar(select(func.count()).where(SignInFailure.username == account,
                                                              SignInFailure.failed_at > since))
            of_address = db.scalar(select(func.count()).where(SignInFailure.client == address,
                                                              SignInFailure.failed_at > since))
            self._prune(db)
        log.warning("sign-in failed for %r from %s: %d failure(s) of this account and %d from this address in the "
                    "last %g s (locked at %d and %d)", account, address, of_account, of_address,
                    self.policy.window_s, self.policy.account_limit, self.policy.client_limit)

    def clear(self, username: str) -> None:
        """A successful sign-in: the account's failures no longer count."""
        with self._sessions() as db, db.begin():
            db.execute(delete(SignInFailure).where(SignInFailure.username == account_key(username)))

    def _prune(self, db: Session) -> None:
        """Failures older than the longest lock no longer count; delete them now and then, not on every failure."""
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        cutoff = func.now() - timedelta(seconds=self.policy.max_lock_s)
        db.execute(delete(SignInFailure).where(SignInFailure.failed_at < cutoff))

    @contextmanager
    def password_check(self) -> Iterator[None]:
        """A slot for one password check; SignInBusy at once when all are taken (a queue would only grow)."""
        if not self._checks.acquire(blocking=False):
            raise SignInBusy()
        try:
            yield
        finally:
            self._checks.release()
