"""Sessions of the review UI end for good: logout everywhere, a new password, a deactivation, the absolute
lifetime and the idle lifetime; every one of them on the session's next request (API 401, pages to /login)."""

from __future__ import annotations

import dataclasses
import time
import uuid

import pytest
from click.testing import CliRunner
from flask import Flask

from infra.settings import Settings
from review_ui.app import create_app
from review_ui.cli import ui
from review_ui.security import SESSION_ENDED
from review_ui.services import UiServices
from tests.review_ui_support import PASSWORD, SignedIn, add_operator

NEW_PASSWORD = "a brand new passphrase"


def _app(deployment: Settings, **changes: object) -> Flask:
    """A UI app without background services (sign-in needs only the database), with changed settings."""
    return create_app(UiServices.create(dataclasses.replace(deployment, **changes), projection=False))


def _cli(deployment: Settings, *args: str, stdin: str | None = None) -> None:
    env = {"WASTEX_TOPIC_PREFIX": deployment.topic_prefix, "WASTEX_POSTGRES_DB": deployment.postgres_db}
    result = CliRunner().invoke(ui, list(args), input=stdin, env=env)
    assert result.exit_code == 0, result.output


def _assert_ended(api: SignedIn, page: SignedIn) -> None:
    """The API answers 401 with the reason; a page goes to /login, which shows the reason once."""
    answer = api.get("/api/session")
    assert answer.status_code == 401 and answer.json["error"] == SESSION_ENDED
    redirected = page.get("/queue")
    assert redirected.status_code == 302 and redirected.headers["Location"] == "/login?next=/queue"
    login = page.get(redirected.headers["Location"])
    assert "your session was ended: signed out everywhere, password changed or account deactivated" in login.text
    assert "your session was ended" not in page.get("/login").text
    assert api.get("/api/session").status_code == 401  # the ended session was cleared: signed out for good


@pytest.fixture(scope="module")
def app(deployment: Settings) -> Flask:
    return _app(deployment)


def test_logging_out_everywhere_ends_every_session_of_the_operator_and_only_theirs(app: Flask,
                                                                                   deployment: Settings) -> None:
    name = add_operator(deployment, f"lo-{uuid.uuid4().hex[:6]}", role="labeller")
    here, api, page = SignedIn(app, name), SignedIn(app, name), SignedIn(app, name)
    other = SignedIn(app, add_operator(deployment, f"other-{uuid.uuid4().hex[:6]}", role="labeller"))
    assert "Sign out everywhere" in page.get("/queue").text
    assert here.post("/api/logout-everywhere").json == {"operator": name}
    _assert_ended(api, page)
    assert here.get("/api/session").status_code == 401
    assert other.get("/api/session").status_code == 200
    assert SignedIn(app, name).get("/api/session").json["operator"] == name  # signing in again works


def test_the_sign_out_everywhere_button_ends_the_other_sessions_too(app: Flask, deployment: Settings) -> None:
    name = add_operator(deployment, f"btn-{uuid.uuid4().hex[:6]}", role="labeller")
    here, elsewhere = SignedIn(app, name), SignedIn(app, name)
    answer = here.client.post("/logout-everywhere", data={"csrf_token": here.token})
    assert answer.status_code == 302 and answer.headers["Location"] == "/login"
    assert f"every session of {name} has ended" in here.get("/login").text
    assert elsewhere.get("/api/session").status_code == 401


@pytest.mark.parametrize("ending", ["password reset", "deactivation", "logout-everywhere command"])
def test_an_account_change_ends_open_sessions_at_their_next_request(app: Flask, deployment: Settings,
                                                                    ending: str) -> None:
    name = add_operator(deployment, f"end-{uuid.uuid4().hex[:6]}", role="labeller")
    api, page = SignedIn(app, name), SignedIn(app, name)
    assert api.get("/api/session").status_code == 200 and page.get("/queue").status_code == 200
    if ending == "password reset":
        _cli(deployment, "create-operator", name, "--reset", "--password-stdin", stdin=f"{NEW_PASSWORD}\n")
    elif ending == "deactivation":
        _cli(deployment, "deactivate", name)
    else:
        _cli(deployment, "logout-everywhere", name)
    _assert_ended(api, page)
    if ending == "password reset":
        assert SignedIn(app, name, NEW_PASSWORD).get("/api/session").status_code == 200
    if ending == "deactivation":
        client = app.test_client()
        token = client.get("/api/csrf").json["csrf_token"]
        refused = client.post("/api/login", json={"username": name, "password": PASSWORD},
                              headers={"X-CSRF-Token": token})
        assert refused.status_code == 401


def test_a_busy_session_ends_at_its_absolute_lifetime(deployment: Settings) -> None:
    app = _app(deployment, ui_session_max_s=3.0)
    name = add_operator(deployment, f"busy-{uuid.uuid4().hex[:6]}", role="labeller")
    started = time.monotonic()
    operator = SignedIn(app, name)
    answers = []
    while not answers or answers[-1].status_code == 200:
        answers.append(operator.get("/api/session"))
        assert time.monotonic() - started < 60, "the session outlived its absolute lifetime"
        time.sleep(0.3)
    assert time.monotonic() - started >= 3.0
    assert len(answers) > 1 and {a.status_code for a in answers[:-1]} == {200}
    assert answers[-1].status_code == 401
    assert answers[-1].json["error"] == "your session is over: sessions last at most 3 s from sign-in; sign in again"
    assert SignedIn(app, name).get("/api/session").status_code == 200


def test_an_idle_session_ends_after_the_idle_lifetime(deployment: Settings) -> None:
    app = _app(deployment, ui_session_idle_s=3.0)
    operator = SignedIn(app, add_operator(deployment, f"idle-{uuid.uuid4().hex[:6]}", role="labeller"))
    assert operator.get("/api/session").status_code == 200
    time.sleep(5.0)
    answer = operator.get("/api/session")
    assert answer.status_code == 401 and "sign in first" in answer.json["error"]
