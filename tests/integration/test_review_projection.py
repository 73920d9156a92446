"""The review-queue projection on the real services: a record PostgreSQL refuses goes to the dead letters on its
own, and the events after it are projected and committed; of images.classified only audit samples are projected."""

from __future__ import annotations

import json

from confluent_kafka import Consumer, Producer, TopicPartition
from sqlalchemy import select

from infra.clients import db_sessions
from infra.db.models import ReviewItem
from infra.kafka_security import confluent_config
from infra.settings import Settings
from infra.topic_reader import TopicReader
from review_ui.projection import OodProjector, group_id
from schemas.codec import encode, new_event
from schemas.events import Event, EventType
from schemas.topics import IMAGES_CLASSIFIED, IMAGES_OOD
from tests.review_ui_support import FlaggedImages, wait_until


def _committed(deployment: Settings, topic: str) -> int:
    consumer = Consumer({**confluent_config(deployment), "group.id": group_id(deployment)})
    try:
        (position,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return position.offset
    finally:
        consumer.close()


def test_a_flagged_event_with_a_nul_byte_is_dead_lettered_alone_and_the_next_events_are_projected(
        fresh_deployment: Settings) -> None:
    flagged = FlaggedImages(fresh_deployment)
    topic = IMAGES_OOD.full_name(fresh_deployment.topic_prefix)
    try:
        before = flagged.event(7101)
        poison = flagged.event(7102).to_document()
        # The schema takes a NUL inside a class name; PostgreSQL refuses NUL in text. Raw bytes: no codec check.
        poison["payload"]["predicted_class"] = "gla\u0000ss"
        after = [flagged.event(7103 + index) for index in range(3)]
        producer = Producer(confluent_config(fresh_deployment))
        for value in [encode(before), json.dumps(poison).encode(), *(encode(event) for event in after)]:
            producer.produce(topic, key=b"cam-1", value=value, partition=0)  # one partition: one batch, in order
        assert producer.flush(10) == 0

        sessions = db_sessions(fresh_deployment)
        projector = OodProjector(fresh_deployment, sessions).start()
        try:
            wait_until(lambda: projector.projected == 4, 60, "the four valid events projected")
            wait_until(lambda: _committed(fresh_deployment, topic) == 5, 30, "the offsets committed past the poison")
        finally:
            projector.stop()
        with sessions() as session:
            projected = set(session.scalars(select(ReviewItem.source_event_id)))
        assert projected == {before.event_id, *(event.event_id for event in after)}

        letters = TopicReader.collect(fresh_deployment, 3, "dead-letters")["dead-letters"]
        (letter,) = letters
        assert letter.payload["reason"] == "processing_error" and "NUL" in letter.payload["detail"]
        assert letter.payload["original"]["offset"] == 1 and letter.payload["original_event_id"] == poison["event_id"]
        assert projector.degradation.report() == {"status": "ok"}
    finally:
        flagged.cleanup()


def _classified(flagged: FlaggedImages, seed: int, *, audit: bool, embedding: list[float] | None = None) -> Event:
    """An ImageClassified of a real stored image: an audit sample when `audit`."""
    ood = flagged.event(seed).payload
    payload = {key: ood[key] for key in ("image", "camera_id", "site_id", "captured_at", "predicted_class",
                                         "confidence", "energy", "model_version", "model_digest",
                                         "captured_event_id")}
    payload["captured_position"] = {"partition": 0, "offset": seed}
    if audit:
        payload |= {"audit": True, "classes": ood["classes"], "probabilities": ood["probabilities"]}
    if embedding is not None:
        payload["embedding"] = embedding
    return new_event(EventType.IMAGE_CLASSIFIED, payload, "scoring")


def test_only_audit_samples_of_the_classified_topic_are_projected_once_and_nothing_else_is_dead_lettered(
        fresh_deployment: Settings) -> None:
    flagged = FlaggedImages(fresh_deployment)
    topic = IMAGES_CLASSIFIED.full_name(fresh_deployment.topic_prefix)
    try:
        ordinary = [_classified(flagged, 7201 + index, audit=False) for index in range(3)]
        audit = _classified(flagged, 7210, audit=True, embedding=[0.25, -1.5, 3.0])
        producer = Producer(confluent_config(fresh_deployment))
        values = [encode(ordinary[0]), encode(audit), b'{"audit": true, but not json', encode(ordinary[1]),
                  encode(audit), encode(ordinary[2])]  # the audit sample twice: a redelivery
        for value in values:
            producer.produce(topic, key=b"cam-1", value=value, partition=0)
        assert producer.flush(10) == 0

        sessions = db_sessions(fresh_deployment)
        projector = OodProjector(fresh_deployment, sessions).start()
        try:
            wait_until(lambda: _committed(fresh_deployment, topic) == len(values), 60, "every record read")
        finally:
            projector.stop()
        with sessions() as session:
            (item,) = session.scalars(select(ReviewItem))
        assert (item.source_event_id, item.kind, item.reason) == (audit.event_id, "audit", "audit")
        assert item.embedding == [0.25, -1.5, 3.0] and item.probabilities == audit.payload["probabilities"]
        assert item.thresholds == {} and item.status == "pending"
        assert TopicReader.collect(fresh_deployment, 2, "dead-letters")["dead-letters"] == []
    finally:
        flagged.cleanup()
