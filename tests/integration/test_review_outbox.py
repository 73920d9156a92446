"""A Kafka outage while operators work: the action is saved, the UI says so, and the event is sent once later."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from infra.clients import db_sessions, minio_client
from infra.db.models import LabelOutbox
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topic_reader import TopicReader
from review_ui.app import create_app
from review_ui.counts_view import CountsView
from review_ui.imports import LabelledImporter
from review_ui.outbox import OutboxDrainer
from review_ui.projection import project
from review_ui.services import UiServices
from tests.review_ui_support import FlaggedImages, SignedIn, add_operator, wait_until


def _unreachable_broker(isolated: Settings) -> EventPublisher:
    return EventPublisher(isolated, **{"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 2000})


def test_a_broker_outage_loses_no_action_and_the_event_is_sent_once(deployment: Settings) -> None:
    sessions = db_sessions(deployment)
    flagged = FlaggedImages(deployment)
    try:
        event = flagged.event(5151, camera="cam-outage")
        with sessions() as session, session.begin():
            project(session, [event])
        storage = minio_client(deployment)
        services = UiServices(deployment, sessions, storage,
                              drainer=OutboxDrainer(deployment, sessions, lambda: _unreachable_broker(deployment)),
                              counts=CountsView(deployment), importer=LabelledImporter(deployment, storage, sessions),
                              projector=None)
        services.drainer.start()
        try:
            app = create_app(services)
            operator = SignedIn(app, add_operator(deployment, f"out-{uuid.uuid4().hex[:6]}"))
            item = operator.get("/api/ood?camera=cam-outage").json["items"][0]
            answer = operator.act(f"/api/ood/{item['id']}/label", label="glass")
            assert answer["published"] is False
            assert "not reachable" in answer["warning"] and "Nothing is lost" in answer["warning"]
            assert answer["changed"][0]["status"] == "labelled"  # the decision itself is saved
            page = operator.get("/queue").text
            assert "The label log (Kafka) is not reachable" in page
            status = wait_until(lambda: (s := operator.get("/api/outbox").json)["last_error"] and s, 30,
                                "the drain error")
            assert status["pending"] == 1 and status["last_error"]
        finally:
            services.drainer.stop()

        assert OutboxDrainer(deployment, sessions).drain_once() == 1  # the broker is back
        assert OutboxDrainer(deployment, sessions).drain_once() == 0
        reader = TopicReader(deployment, "labels")
        reader.poll(3.0)
        reader.close()
        assert [e.event_id for e in reader.events["labels"]] == answer["events"]
        with sessions() as session:
            row = session.scalars(select(LabelOutbox)).one()
            assert row.published_at is not None and row.attempts >= 2 and row.last_error is None
    finally:
        flagged.cleanup()
