"""The review UI's Prometheus metrics: a public /metrics that creates no session, label actions and failed sign-ins
counted, and a scrape that still answers, quickly, while PostgreSQL is unreachable."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from infra.settings import Settings, load_settings
from review_ui import ui_metrics
from review_ui.actions import ActionResult
from review_ui.app import create_app
from review_ui.outbox import OutboxBacklog
from review_ui.services import UiServices
from review_ui.views import auth, common

pytestmark = pytest.mark.unit

NOWHERE = "postgresql+psycopg2://wastex:wastex@127.0.0.1:1/wastex"  # nothing listens on port 1


@pytest.fixture()
def ui_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.setenv("WASTEX_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("WASTEX_DATABASE_URL", NOWHERE)
    monkeypatch.delenv("WASTEX_METRICS", raising=False)
    return load_settings()


def _app(settings: Settings) -> Flask:
    return create_app(UiServices.create(settings, projection=False))


def _samples(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of GET /metrics by name and labels."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def test_metrics_answer_without_signing_in_and_create_no_session(ui_settings: Settings) -> None:
    client = _app(ui_settings).test_client()
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "Set-Cookie" not in response.headers
    assert client.get_cookie("wastex_session") is None
    assert "wastex_review_failed_sign_ins_total 0.0" in response.get_data(as_text=True)


def test_every_label_action_kind_is_shown_from_zero(ui_settings: Settings) -> None:
    samples = _samples(_app(ui_settings).test_client())
    assert {labels: value for (name, labels), value in samples.items()
            if name == "wastex_review_label_actions_total"} == {
        (("kind", kind),): 0.0 for kind in ("label", "review", "discard", "undo", "import")}


def test_an_unreachable_database_leaves_the_queue_figures_out_and_the_scrape_answers_quickly(
        ui_settings: Settings) -> None:
    client = _app(ui_settings).test_client()
    started = time.monotonic()
    names = {name for name, _ in _samples(client)}
    assert time.monotonic() - started < 2 * ui_metrics.STORE_TIMEOUT_S + 1
    assert "wastex_review_failed_sign_ins_total" in names and "process_cpu_seconds_total" in names
    assert not names & {"wastex_review_queue_items", "wastex_review_outbox_rows",
                        "wastex_review_outbox_oldest_age_seconds"}


def test_the_queue_and_outbox_figures_are_read_from_the_store_at_each_scrape(
        monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []

    @contextmanager
    def sessions() -> Iterator[str]:
        opened.append("session")
        yield "session"

    depth = {"pending": 3, "labelled": 5, "discarded": 0}
    monkeypatch.setattr(ui_metrics, "status_counts", lambda session: dict(depth))
    monkeypatch.setattr(ui_metrics, "outbox_backlog", lambda session: OutboxBacklog(2, 42.5))
    registry = CollectorRegistry(auto_describe=True)
    ui_metrics.UiMetrics(sessions, registry)
    assert opened == []  # registering (and describing) reads nothing

    assert registry.get_sample_value("wastex_review_queue_items", {"status": "pending"}) == 3
    assert registry.get_sample_value("wastex_review_queue_items", {"status": "discarded"}) == 0
    assert registry.get_sample_value("wastex_review_outbox_rows") == 2
    assert registry.get_sample_value("wastex_review_outbox_oldest_age_seconds") == 42.5
    depth["pending"] = 1
    assert registry.get_sample_value("wastex_review_queue_items", {"status": "pending"}) == 1
    assert len(opened) == 5  # one session per scrape


class AlwaysWrongPassword:
    """A sign-in throttle that lets every attempt through to the password check and notes the failures."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def refusal(self, username: str, client: str) -> None:
        return None

    @contextmanager
    def password_check(self) -> Iterator[None]:
        yield

    def record_failure(self, username: str, client: str) -> None:
        self.failures.append(username)


def test_a_failed_sign_in_increments_the_counter(ui_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(ui_settings)
    throttle = app.extensions[auth.THROTTLE] = AlwaysWrongPassword()
    monkeypatch.setattr(auth, "authenticate", lambda *_: None)
    client = app.test_client()
    token = client.get("/api/csrf").get_json()["csrf_token"]
    for _ in range(2):
        response = client.post("/api/login", json={"username": "mallory", "password": "guess"},
                               headers={"X-CSRF-Token": token})
        assert response.status_code == 401
    assert throttle.failures == ["mallory", "mallory"]
    assert _samples(client)[("wastex_review_failed_sign_ins_total", ())] == 2.0


def test_a_label_action_is_counted_once_by_its_kind_and_a_replay_not_again(
        ui_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(ui_settings)
    monkeypatch.setattr(common, "action_payload", lambda result: {"kind": result.kind})  # no outbox to wait for
    with app.test_request_context():
        common.action_response(ActionResult("a-1234567", "discard"))
        common.action_response(ActionResult("a-1234567", "discard", replayed=True))
        common.action_response(ActionResult("b-1234567", "label"))
    samples = _samples(app.test_client())
    assert samples[("wastex_review_label_actions_total", (("kind", "discard"),))] == 1.0
    assert samples[("wastex_review_label_actions_total", (("kind", "label"),))] == 1.0
    assert samples[("wastex_review_label_actions_total", (("kind", "undo"),))] == 0.0


def test_each_app_counts_in_a_registry_of_its_own(ui_settings: Settings) -> None:
    first, second = _app(ui_settings), _app(ui_settings)
    with first.app_context():
        ui_metrics.count_failed_sign_in()
    assert _samples(first.test_client())[("wastex_review_failed_sign_ins_total", ())] == 1.0
    assert _samples(second.test_client())[("wastex_review_failed_sign_ins_total", ())] == 0.0


def test_with_metrics_off_there_is_no_metrics_route_and_nothing_is_counted(
        ui_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASTEX_METRICS", "false")
    app = _app(load_settings())
    assert ui_metrics.EXTENSION not in app.extensions
    assert "metrics" not in {rule.endpoint for rule in app.url_map.iter_rules()}
    response = app.test_client().get("/metrics")
    assert response.status_code == 302 and "/login" in response.headers["Location"]  # like any unknown page
    with app.app_context():
        ui_metrics.count_label_action("label")  # does nothing, and does not fail
        ui_metrics.count_failed_sign_in()
