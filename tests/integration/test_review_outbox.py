"""A Kafka outage while operators work: the action is saved, the UI says so, and the event is sent once later.
A row that can never be sent is rejected on its own and the rows after it flow."""

from __future__ import annotations

import hashlib
import uuid

from click.testing import CliRunner
from sqlalchemy import select

from infra.clients import db_sessions, minio_client
from infra.db.models import LabelOutbox
from infra.deployment import environment
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topic_reader import TopicReader
from review_ui.app import create_app
from review_ui.cli import ui
from review_ui.counts_view import CountsView
from review_ui.imports import LabelledImporter
from review_ui.outbox import OutboxDrainer, enqueue, outbox_status
from review_ui.projection import project
from review_ui.services import UiServices
from schemas.codec import new_event
from schemas.events import Event, EventType
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


def _label_event(name: str) -> Event:
    sha256 = hashlib.sha256(name.encode()).hexdigest()
    return new_event(EventType.LABEL_ASSIGNED, {
        "image": {"bucket": "wastex-images", "object_key": f"images/{sha256}.jpg", "sha256": sha256},
        "label": "glass", "operator_id": "alice", "flagged_by_model_version": "m1",
        "source_event_id": str(uuid.uuid4()), "new_class": False, "action_id": uuid.uuid4().hex}, "review_ui")


def test_an_outbox_row_that_fails_its_contract_is_rejected_and_the_rows_after_it_are_sent(
        fresh_deployment: Settings) -> None:
    sessions = db_sessions(fresh_deployment)
    events = [_label_event(f"outbox-{index}") for index in range(3)]
    broken = events[1].to_document()
    del broken["payload"]["label"]
    with sessions.begin() as session:
        rows = [enqueue(session, event) for event in events]
        rows[1].document = broken

    assert OutboxDrainer(fresh_deployment, sessions).drain_once() == 2
    assert OutboxDrainer(fresh_deployment, sessions).drain_once() == 0
    with sessions() as session:
        status = outbox_status(session)
    assert status.pending == 0 and [row.event_id for row in status.rejected] == [events[1].event_id]
    assert "label" in status.rejected[0].reason

    read = TopicReader.collect(fresh_deployment, 3, "labels", "dead-letters")
    assert sorted(e.event_id for e in read["labels"]) == sorted([events[0].event_id, events[2].event_id])
    (letter,) = read["dead-letters"]
    assert letter.payload["reason"] == "schema_invalid" and letter.payload["original_event_id"] == events[1].event_id

    shown = CliRunner().invoke(ui, ["outbox"], env=environment(fresh_deployment))
    assert shown.exit_code == 0 and "0 label event(s) waiting" in shown.output
    assert f"rejected outbox row {rows[1].id} (event {events[1].event_id})" in shown.output
    operator = SignedIn(create_app(UiServices.create(fresh_deployment, projection=False)),
                        add_operator(fresh_deployment, f"rej-{uuid.uuid4().hex[:6]}"))
    answer = operator.get("/api/outbox").json
    assert answer["pending"] == 0 and [row["event_id"] for row in answer["rejected"]] == [events[1].event_id]
