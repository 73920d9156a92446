"""The sign-in throttle on the real database: failed sign-ins lock the account and the client address (429 with
Retry-After, the password not even checked), each address is counted apart, and password checks are bounded."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from infra.clients import db_sessions
from infra.db.models import SignInFailure
from infra.settings import Settings
from review_ui.app import create_app
from review_ui.services import UiServices
from review_ui.views import auth
from tests.review_ui_support import PASSWORD, add_operator

WRONG = "not the password at all"


def _app(deployment: Settings, **changes: object) -> Flask:
    """A UI app without background services (sign-in needs only the database), with changed settings."""
    return create_app(UiServices.create(dataclasses.replace(deployment, **changes), projection=False))


class Client:
    """A browser-less client at one address, with the CSRF token its sign-ins need."""

    def __init__(self, app: Flask, address: str = "127.0.0.1", headers: dict[str, str] | None = None) -> None:
        self.client = app.test_client()
        self.environ = {"REMOTE_ADDR": address}
        self.headers = headers or {}
        self.token = self.client.get("/api/csrf", environ_base=self.environ).json["csrf_token"]

    def login(self, username: str, password: str) -> TestResponse:
        return self.client.post("/api/login", json={"username": username, "password": password},
                                headers={"X-CSRF-Token": self.token, **self.headers}, environ_base=self.environ)

    def login_page(self, username: str, password: str) -> TestResponse:
        return self.client.post("/login", data={"username": username, "password": password, "csrf_token": self.token},
                                environ_base=self.environ)


def _failures(deployment: Settings, **where: str) -> int:
    with db_sessions(deployment)() as db:
        return db.scalar(select(func.count()).select_from(SignInFailure).filter_by(**where))


@pytest.fixture()
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The user names whose password was really checked (the real check runs)."""
    checked: list[str] = []
    real = auth.authenticate

    def counting(db: object, username: str, password: str) -> object:
        checked.append(username)
        return real(db, username, password)

    monkeypatch.setattr(auth, "authenticate", counting)
    return checked


def test_eleven_wrong_passwords_lock_the_account_even_for_the_right_one_until_the_window_passes(
        deployment: Settings, password_checks: list[str], caplog: pytest.LogCaptureFixture) -> None:
    app = _app(deployment, ui_signin_window_s=20.0)
    name = add_operator(deployment, f"Lock-{uuid.uuid4().hex[:6]}", role="labeller")
    client = Client(app)
    with caplog.at_level(logging.WARNING, logger="review_ui.sign_in_throttle"):
        wrong = [client.login(name, WRONG) for _ in range(10)]
        assert [a.status_code for a in wrong] == [401] * 10
        eleventh, right = client.login(name, WRONG), client.login(name, PASSWORD)
    assert len(password_checks) == 10  # neither the eleventh nor the right password cost a hash
    for locked in (eleventh, right):
        assert locked.status_code == 429
        assert 1 <= int(locked.headers["Retry-After"]) <= 20
        assert locked.json["error"].startswith("too many failed sign-ins for this account: try again in")
    page = client.login_page(name, PASSWORD)
    assert page.status_code == 429 and "Retry-After" in page.headers and "too many failed sign-ins" in page.text

    failures = [r for r in caplog.records if r.levelno == logging.WARNING and "sign-in failed" in r.getMessage()]
    assert len(failures) == 10
    assert name.lower() in failures[-1].getMessage() and "127.0.0.1" in failures[-1].getMessage()
    assert "10 failure(s) of this account" in failures[-1].getMessage()
    assert not any(WRONG in r.getMessage() or PASSWORD in r.getMessage() for r in caplog.records)
    assert _failures(deployment, username=name.lower()) == 10

    answer = right
    while answer.status_code == 429:  # wait out the lock as the server states it
        time.sleep(int(answer.headers["Retry-After"]))
        answer = client.login(name, PASSWORD)
    assert answer.status_code == 200 and answer.json["operator"] == name
    assert _failures(deployment, username=name.lower()) == 0  # a success clears the account's failures


def test_addresses_are_counted_apart_and_an_account_lock_holds_for_every_address(deployment: Settings) -> None:
    app = _app(deployment, ui_signin_max_failures=3, ui_signin_max_client_failures=5, ui_signin_window_s=600.0)
    tag = uuid.uuid4().hex[:6]
    first, second, victim = (add_operator(deployment, f"{who}-{tag}", role="labeller")
                             for who in ("first", "second", "victim"))
    noisy, quiet, guesser = Client(app, "10.0.0.1"), Client(app, "10.0.0.2"), Client(app, "10.0.0.3")
    attempts = [noisy.login(user, WRONG) for user in (first, first, second, second, f"nobody-{tag}")]
    assert [a.status_code for a in attempts] == [401] * 5  # no account reached 3, the address reached 5
    locked_address = noisy.login(victim, PASSWORD)
    assert locked_address.status_code == 429 and "from this address" in locked_address.json["error"]
    assert quiet.login(victim, PASSWORD).status_code == 200  # another address is not locked by the first

    assert guesser.login(first, WRONG).status_code == 401  # the account's third failure, from a third address
    for client in (Client(app, "10.0.0.4"), Client(app, "10.0.0.2")):
        answer = client.login(first, PASSWORD)
        assert answer.status_code == 429 and "for this account" in answer.json["error"]
    assert _failures(deployment, client="10.0.0.1") == 5


def test_the_client_address_comes_from_x_forwarded_for_only_behind_trusted_proxies(deployment: Settings) -> None:
    tag = uuid.uuid4().hex[:6]
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    Client(_app(deployment), headers=forwarded).login(f"direct-{tag}", WRONG)
    Client(_app(deployment, ui_trusted_proxies=1), headers=forwarded).login(f"proxied-{tag}", WRONG)
    with db_sessions(deployment)() as db:
        clients = dict(db.execute(select(SignInFailure.username, SignInFailure.client)
                                  .where(SignInFailure.username.like(f"%-{tag}"))).all())
    assert clients == {f"direct-{tag}": "127.0.0.1", f"proxied-{tag}": "203.0.113.7"}


def test_sign_in_answers_503_rather_than_queueing_when_every_password_check_slot_is_taken(
        deployment: Settings) -> None:
    app = _app(deployment, ui_signin_concurrency=1)
    name = add_operator(deployment, f"busy-{uuid.uuid4().hex[:6]}", role="labeller")
    client = Client(app)
    with app.extensions[auth.THROTTLE].password_check():
        busy = client.login(name, PASSWORD)
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert "too many sign-ins at once" in busy.json["error"]
    assert _failures(deployment, username=name.lower()) == 0  # not checked, so not a failure
    assert client.login(name, PASSWORD).status_code == 200


def test_failures_older_than_the_longest_lock_are_pruned(deployment: Settings) -> None:
    tag = uuid.uuid4().hex[:6]
    with db_sessions(deployment)() as db, db.begin():
        db.add(SignInFailure(username=f"old-{tag}", client="10.1.1.1",
                             failed_at=datetime.now(UTC) - timedelta(hours=5)))
    Client(_app(deployment)).login(f"new-{tag}", WRONG)
    assert _failures(deployment, username=f"old-{tag}") == 0
    assert _failures(deployment, username=f"new-{tag}") == 1
