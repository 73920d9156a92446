"""PostgreSQL stopped under the review UI's background work: the queue projection and the label outbox wait,
`/health` says degraded and why, and once the database is back every flagged image is in the queue and labels
flow again. Nothing is dead-lettered for a passing failure."""

from __future__ import annotations

import uuid

from infra.settings import Settings
from infra.topic_reader import TopicReader
from review_ui.app import create_app
from review_ui.outbox import WAITING_FOR
from review_ui.projection import PROJECTING
from review_ui.services import UiServices
from tests.outages import stopped
from tests.review_ui_support import FlaggedImages, SignedIn, add_operator, wait_until


def test_with_postgresql_stopped_the_projection_and_the_outbox_wait_say_so_and_catch_up(
        settings: Settings, fresh_deployment: Settings) -> None:
    flagged = FlaggedImages(fresh_deployment)
    services = UiServices.create(fresh_deployment).start()
    try:
        app = create_app(services)
        anonymous = app.test_client()
        operator = SignedIn(app, add_operator(fresh_deployment, f"pg-{uuid.uuid4().hex[:6]}"))
        flagged.publish([flagged.event(8101, camera="cam-pg")])
        wait_until(lambda: services.projector.projected == 1, 60, "the first event projected")
        assert anonymous.get("/health").json == {"status": "ok"}  # public, like the ingest's

        with stopped(settings, "postgres"):
            flagged.publish([flagged.event(8102 + index, camera="cam-pg") for index in range(3)])
            health = wait_until(lambda: (h := anonymous.get("/health").json)["status"] == "degraded"
                                and {w["for"] for w in h["waiting"]} >= {PROJECTING, WAITING_FOR} and h,
                                60, "/health to say what the projection and the outbox wait for")
            assert all(w["reason"] for w in health["waiting"])

        wait_until(lambda: services.projector.projected == 4, 120, "the events of the outage projected")
        items = operator.get("/api/ood?camera=cam-pg").json["items"]
        assert len(items) == 4
        answer = operator.act(f"/api/ood/{items[0]['id']}/label", label="glass")
        assert answer["published"] is True  # the drainer that waited through the outage sends again
        wait_until(lambda: anonymous.get("/health").json == {"status": "ok"}, 90, "/health to say ok again")
        assert TopicReader.collect(fresh_deployment, 3, "dead-letters")["dead-letters"] == []
    finally:
        services.stop()
        flagged.cleanup()
