"""The event contracts: every schema file, one valid example per event type, and what each payload refuses."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from schemas.codec import (
    FORMAT_CHECKER,
    InvalidEvent,
    _compiled_check,
    _registry,
    _validator,
    decode_event,
    encode,
    new_event,
    schema_files,
)
from schemas.events import EVENT_TOPICS, DeadLetterReason, EventType, route
from schemas.topics import ALL_TOPICS, COUNTS_TOTALS, COUNTS_WINDOWS, DEAD_LETTERS

pytestmark = pytest.mark.unit

SHA = "3f" * 32
IMAGE = {"bucket": "wastex-images", "object_key": f"images/{SHA}.jpg", "sha256": SHA}
CAPTURED_ID = "6f1c2f4e-8a0b-4d56-9b1e-2c3d4e5f6a7b"
DIGEST = "d1" * 32  # a model artefact's content digest
OOD_ID = "0b7e1a52-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
AT = "2026-03-01T12:00:00.000Z"
CLASSES = ["cardboard", "glass", "metal", "paper", "plastic", "Miscellaneous Trash"]
THRESHOLDS = {"tau_energy": -4.338604, "tau_softmax": 0.7}

EXAMPLES: dict[EventType, dict[str, Any]] = {
    EventType.IMAGE_CAPTURED: {
        **IMAGE,
        "size_bytes": 48213,
        "content_type": "image/jpeg",
        "camera_id": "cam-1",
        "site_id": "site-a",
        "captured_at": AT,
    },
    EventType.IMAGE_CLASSIFIED: {
        "image": IMAGE,
        "camera_id": "cam-1",
        "site_id": "site-a",
        "captured_at": AT,
        "predicted_class": "glass",
        "confidence": 0.93,
        "energy": -7.2,
        "model_version": "m-0001",
        "model_digest": DIGEST,
        "captured_event_id": CAPTURED_ID,
        "captured_position": {"partition": 3, "offset": 1207},
    },
    EventType.IMAGE_FLAGGED_OOD: {
        "image": IMAGE,
        "camera_id": "cam-1",
        "site_id": "site-a",
        "captured_at": AT,
        "logits": [0.1, 0.2, 0.15, 0.1, 0.3, 0.05],
        "probabilities": [0.16, 0.17, 0.17, 0.16, 0.19, 0.15],
        "classes": CLASSES,
        "predicted_class": "plastic",
        "confidence": 0.19,
        "energy": -1.9,
        "thresholds": THRESHOLDS,
        "reason": "both",
        "model_version": "m-0001",
        "model_digest": DIGEST,
        "captured_event_id": CAPTURED_ID,
    },
    EventType.COUNTS_UPDATED: {
        "scope": "class",
        "key": "glass",
        "window": {"start": "2026-03-01T12:00:00Z", "end": "2026-03-01T12:01:00Z"},
        "count": 42,
        "model_version": "m-0001",
        "as_of": AT,
    },
    EventType.LABEL_ASSIGNED: {
        "image": IMAGE,
        "label": "textile",
        "operator_id": "alice",
        "flagged_by_model_version": "m-0001",
        "source_event_id": OOD_ID,
        "new_class": True,
        "action_id": "a-7c1d",
    },
    EventType.IMAGE_DISCARDED: {
        "image": IMAGE,
        "operator_id": "alice",
        "reason": "not waste",
        "flagged_by_model_version": None,
        "source_event_id": None,
        "action_id": "a-7c1e",
    },
    EventType.LABEL_RETRACTED: {
        "image": IMAGE,
        "operator_id": "alice",
        "retracted_event_id": CAPTURED_ID,
        "flagged_by_model_version": "m-0001",
        "source_event_id": OOD_ID,
        "action_id": "a-7c1f",
    },
    EventType.CREATE_VERSION_REQUESTED: {
        "request_id": "req-91",
        "name": "v2",
        "parent": "v1",
        "requested_by": "alice",
        "notes": "textile added",
        "trigger": "manual",
    },
    EventType.DATASET_VERSION_CREATED: {
        "request_id": "req-91",
        "version_name": "v2",
        "version_id": 2,
        "parent": "v1",
        "manifest": {
            "bucket": "wastex-datasets",
            "object_key": "manifests/v2.jsonl",
            "sha256": "ab" * 32,
            "format": "jsonl",
        },
        "stats": {
            "total": 2530,
            "per_class": {"glass": 501, "textile": 3},
            "per_split": {"train": 1771, "val": 329, "test": 430},
        },
        "classes": [*CLASSES, "textile"],
        "new_classes": ["textile"],
        "created_by": "alice",
        "notes": "",
    },
    EventType.TRAINING_RUN_STARTED: {
        "run_id": "run-17",
        "dataset_version": "v2",
        "config": {"backbone": "efficientnet-lite0", "epochs": 5, "learning_rate": 0.001},
    },
    EventType.TRAINING_RUN_PROGRESSED: {
        "run_id": "run-17",
        "dataset_version": "v2",
        "phase": "fine_tune",
        "epoch": 2,
        "epochs": 5,
        "metrics": {"loss": 0.41, "val_accuracy": 0.88},
    },
    EventType.TRAINING_RUN_COMPLETED: {
        "run_id": "run-17",
        "dataset_version": "v2",
        "model_version": "m-0002",
        "artefact_uri": "s3://wastex-models/runs/run-17/model.keras",
        "metrics": {"accuracy": 0.91, "macro_f1": 0.89},
        "baseline": {"model_version": "m-0001", "metrics": {"accuracy": 0.89, "macro_f1": 0.87}},
        "recommendation": "promote",
        "reason": "macro-F1 +0.02, no class drops more than 0.05",
        "per_class_deltas": {"glass": {"f1": 0.01}, "paper": {"f1": -0.02}},
    },
    EventType.TRAINING_RUN_FAILED: {
        "run_id": "run-17",
        "dataset_version": "v2",
        "error": "interrupted by a restart",
        "retryable": True,
    },
    EventType.MODEL_PROMOTED: {
        "model_version": "m-0002",
        "artefact_uri": "s3://wastex-models/runs/run-17/model.keras",
        "artefact_digest": DIGEST,
        "serving_uri": "s3://wastex-models/runs/run-17/model.tflite",
        "classes": [*CLASSES, "textile"],
        "thresholds": THRESHOLDS,
        "metrics": {"macro_f1": 0.89},
        "promoted_by": "policy",
        "previous_model_version": "m-0001",
        "action": "promote",
    },
    EventType.DEAD_LETTER: {
        "reason": "too_many_pixels",
        "detail": "DecompressionBombError: 200000000 pixels",
        "original": {
            "topic": "wastex.images.captured",
            "partition": 3,
            "offset": 1021,
            "key": "cam-1",
            "value": "{}",
            "encoding": "utf-8",
            "headers": [{"name": "trace", "value": None}],
        },
        "original_event_id": CAPTURED_ID,
        "failed_at": AT,
        "service": "scoring",
    },
    EventType.CAMERA_DRIFT_DETECTED: {
        "camera_id": "cam-1",
        "site_id": "site-a",
        "state": "drifting",
        "model_version": "m-0001",
        "window": {"start": AT, "end": "2026-03-01T13:00:00.000Z"},
        "images": 240,
        "ood_rate": 0.41,
        "expected_ood_rate": 0.05,
        "energy_ks": 0.52,
        "median_energy_shift": 2.3,
        "limits": {"max_ood_rate": 0.2, "max_energy_ks": 0.3},
        "reasons": ["ood_rate", "energy_ks"],
    },
    EventType.AUDITED_ACCURACY_UPDATED: {
        "scope": "camera",
        "key": "cam-1",
        "model_version": "m-0001",
        "audited": 40,
        "correct": 36,
        "accuracy": 0.9,
        "interval": [0.77, 0.96],
        "scored": 2000,
        "ood": 180,
        "ood_rate": 0.09,
        "silent_miscount_rate": 0.091,
        "as_of": AT,
    },
}

EVENT_SCHEMAS = {name: schema for name, schema in schema_files().items() if name in set(EventType)}


def _payload_schema(event_type: EventType) -> dict[str, Any]:
    return EVENT_SCHEMAS[event_type]["properties"]["payload"]


def _rejection(event_type: EventType, payload: dict[str, Any]) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        encode(new_event(event_type, payload, "test"))
    return caught.value


def test_one_schema_file_per_event_type() -> None:
    assert set(EVENT_SCHEMAS) == {str(event_type) for event_type in EventType}
    assert set(EXAMPLES) == set(EventType)


@pytest.mark.parametrize("name", sorted(schema_files()))
def test_every_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = schema_files()[name]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{name}.json")


@pytest.mark.parametrize("event_type", list(EventType))
def test_each_event_schema_builds_on_the_envelope_and_closes_its_payload(event_type: EventType) -> None:
    schema = EVENT_SCHEMAS[event_type]
    assert schema["$ref"] == "envelope.json"
    assert schema["properties"]["event_type"] == {"const": str(event_type)}
    payload = _payload_schema(event_type)
    assert payload["additionalProperties"] is False
    assert payload["required"]


@pytest.mark.parametrize("event_type", list(EventType))
def test_valid_example_round_trips(event_type: EventType) -> None:
    raw = encode(new_event(event_type, EXAMPLES[event_type], "test"))
    event = decode_event(raw)
    assert event.event_type is event_type
    assert event.payload == EXAMPLES[event_type]
    assert event.schema_version == 1
    assert event.source == "test"


@pytest.mark.parametrize(
    ("event_type", "field"),
    [(event_type, field) for event_type in EventType for field in _payload_schema(event_type)["required"]],
)
def test_a_missing_required_field_is_named(event_type: EventType, field: str) -> None:
    payload = copy.deepcopy(EXAMPLES[event_type])
    del payload[field]
    error = _rejection(event_type, payload)
    assert f"'{field}' is a required property" in str(error)
    assert error.path == "payload"


@pytest.mark.parametrize("event_type", list(EventType))
def test_an_extra_payload_field_is_named(event_type: EventType) -> None:
    error = _rejection(event_type, {**EXAMPLES[event_type], "surprise": 1})
    assert "'surprise' was unexpected" in str(error)


@pytest.mark.parametrize(
    ("event_type", "change", "path"),
    [
        (EventType.IMAGE_CAPTURED, {"size_bytes": "48213"}, "payload.size_bytes"),
        (EventType.IMAGE_CAPTURED, {"sha256": "3F" * 32}, "payload.sha256"),
        (EventType.IMAGE_CAPTURED, {"content_type": "text/plain"}, "payload.content_type"),
        (EventType.IMAGE_CAPTURED, {"camera_id": "cam 1"}, "payload.camera_id"),
        (EventType.IMAGE_CAPTURED, {"captured_at": "2026-03-01 12:00"}, "payload.captured_at"),
        (EventType.IMAGE_CLASSIFIED, {"confidence": 1.5}, "payload.confidence"),
        (EventType.IMAGE_CLASSIFIED, {"captured_event_id": "not-a-uuid"}, "payload.captured_event_id"),
        (EventType.IMAGE_CLASSIFIED, {"image": {**IMAGE, "bucket": "Bad_Bucket"}}, "payload.image.bucket"),
        (EventType.IMAGE_FLAGGED_OOD, {"logits": [0.1, "x"]}, "payload.logits[1]"),
        (EventType.IMAGE_FLAGGED_OOD, {"reason": "hunch"}, "payload.reason"),
        (EventType.IMAGE_FLAGGED_OOD, {"classes": ["glass", "glass"]}, "payload.classes"),
        (EventType.IMAGE_CLASSIFIED, {"model_digest": "m-0001"}, "payload.model_digest"),
        (EventType.IMAGE_FLAGGED_OOD, {"model_digest": "D1" * 32}, "payload.model_digest"),
        (EventType.COUNTS_UPDATED, {"count": -1}, "payload.count"),
        (EventType.COUNTS_UPDATED, {"window": {"start": AT}}, "payload.window"),
        (EventType.LABEL_ASSIGNED, {"new_class": "yes"}, "payload.new_class"),
        (EventType.LABEL_RETRACTED, {"retracted_event_id": "a-7c1d"}, "payload.retracted_event_id"),
        (EventType.CREATE_VERSION_REQUESTED, {"trigger": "cron"}, "payload.trigger"),
        (EventType.DATASET_VERSION_CREATED, {"version_id": 0}, "payload.version_id"),
        (EventType.TRAINING_RUN_PROGRESSED, {"metrics": {"loss": "low"}}, "payload.metrics.loss"),
        (EventType.TRAINING_RUN_COMPLETED, {"recommendation": "ship"}, "payload.recommendation"),
        (EventType.TRAINING_RUN_COMPLETED, {"artefact_uri": "model.keras"}, "payload.artefact_uri"),
        (EventType.MODEL_PROMOTED, {"thresholds": {"tau_energy": -4.3}}, "payload.thresholds"),
        (EventType.MODEL_PROMOTED, {"artefact_digest": None}, "payload.artefact_digest"),
        (EventType.DEAD_LETTER, {"reason": "bad_vibes"}, "payload.reason"),
        (EventType.IMAGE_CLASSIFIED, {"audit": "yes"}, "payload.audit"),
        (EventType.IMAGE_FLAGGED_OOD, {"embedding": [0.5]}, "payload.embedding"),
        (EventType.IMAGE_FLAGGED_OOD, {"embedding": [0.5, 1, "2", 3.0]}, "payload.embedding[2]"),
        (EventType.IMAGE_FLAGGED_OOD, {"embedding": [0.5, True]}, "payload.embedding[1]"),
        (EventType.IMAGE_CLASSIFIED, {"audit": True, "classes": CLASSES, "probabilities": [0.5] * 5 + [None]},
         "payload.probabilities[5]"),
        (EventType.LABEL_ASSIGNED, {"site_id": "site a"}, "payload.site_id"),
        (EventType.CAMERA_DRIFT_DETECTED, {"state": "worried"}, "payload.state"),
        (EventType.AUDITED_ACCURACY_UPDATED, {"interval": [0.7]}, "payload.interval"),
    ],
)
def test_a_bad_value_is_refused_at_its_path(event_type: EventType, change: dict[str, Any], path: str) -> None:
    assert _rejection(event_type, {**EXAMPLES[event_type], **change}).path == path


def test_an_audit_sample_must_carry_the_classes_and_probabilities_it_is_shown_with() -> None:
    audit = {**EXAMPLES[EventType.IMAGE_CLASSIFIED], "audit": True}
    assert "'classes' is a required property" in str(_rejection(EventType.IMAGE_CLASSIFIED, audit))
    encode(new_event(EventType.IMAGE_CLASSIFIED, {**audit, "classes": CLASSES, "probabilities": [0.5, 0.1, 0.1, 0.1,
                                                                                                 0.1, 0.1]}, "test"))


def test_nullable_fields_accept_null_and_optional_fields_may_be_left_out() -> None:
    counts = {**EXAMPLES[EventType.COUNTS_UPDATED], "window": None}
    del counts["model_version"]
    encode(new_event(EventType.COUNTS_UPDATED, counts, "test"))
    request = dict(EXAMPLES[EventType.CREATE_VERSION_REQUESTED])
    del request["name"], request["parent"]
    encode(new_event(EventType.CREATE_VERSION_REQUESTED, request, "test"))
    completed = {**EXAMPLES[EventType.TRAINING_RUN_COMPLETED], "baseline": None, "per_class_deltas": {}}
    encode(new_event(EventType.TRAINING_RUN_COMPLETED, completed, "test"))
    promoted = {**EXAMPLES[EventType.MODEL_PROMOTED], "serving_uri": None, "previous_model_version": None}
    encode(new_event(EventType.MODEL_PROMOTED, promoted, "test"))


@pytest.mark.parametrize("event_type", list(EventType))
def test_inlined_references_validate_like_the_schema_files(event_type: EventType) -> None:
    by_reference = Draft202012Validator(
        EVENT_SCHEMAS[event_type], registry=_registry(), format_checker=FORMAT_CHECKER
    )
    valid = new_event(event_type, EXAMPLES[event_type], "test").to_document()
    variants = [valid, {**valid, "event_id": "x"}, {**valid, "payload": {}}]
    variants += [{**valid, "payload": {**valid["payload"], field: None}} for field in valid["payload"]]
    for document in variants:
        assert _validator(event_type).is_valid(document) == by_reference.is_valid(document)


# Values of every JSON type, edge numbers and malformed formats, put in place of each field of a valid event.
STAND_INS: list[Any] = [None, True, False, 0, -1, 1.0, 1.5, -0.5, 2**70, float("nan"), float("inf"), "", "x",
                        "x" * 5000, "2026-13-01T00:00:00Z", "2026-03-01T12:00:00", "not-a-uuid", CAPTURED_ID, SHA,
                        [], [1], ["x"], [0.5] * 3, {}, {"x": 1}]


def _variants(node: Any) -> list[Any]:
    """`node` with one change: every field in turn replaced by each stand-in, removed, or given a neighbour."""
    variants: list[Any] = [stand_in for stand_in in STAND_INS]
    if isinstance(node, dict):
        for key, value in node.items():
            variants.append({k: v for k, v in node.items() if k != key})
            variants += [{**node, key: changed} for changed in _variants(value)]
        variants.append({**node, "unexpected": 1})
    elif isinstance(node, list) and node:
        variants += [[*node[:index], changed, *node[index + 1:]] for index in (0, len(node) - 1)
                     for changed in _variants(node[index])]
        variants += [node[1:], node * 2]
    return variants


def _compiled_accepts(event_type: EventType, document: Any) -> bool:
    try:
        _compiled_check(event_type)(copy.deepcopy(document))
    except Exception:
        return False
    return True


@pytest.mark.parametrize("event_type", list(EventType))
def test_the_compiled_check_gives_jsonschemas_verdict_on_every_one_field_change(event_type: EventType) -> None:
    valid = new_event(event_type, EXAMPLES[event_type], "test").to_document()
    disagreements = [document for document in _variants(valid)
                     if _compiled_accepts(event_type, document) != _validator(event_type).is_valid(document)]
    assert disagreements == []
    assert _compiled_accepts(event_type, valid)


def test_dead_letter_reasons_match_the_schema() -> None:
    assert _payload_schema(EventType.DEAD_LETTER)["properties"]["reason"]["enum"] == list(DeadLetterReason)


@pytest.mark.parametrize("event_type", list(EventType))
def test_every_event_routes_to_a_catalogued_topic_with_a_key(event_type: EventType) -> None:
    target = route(new_event(event_type, EXAMPLES[event_type], "test"))
    assert target.topic in EVENT_TOPICS[event_type]
    assert target.topic in ALL_TOPICS
    assert target.key


def test_counts_route_by_window_and_dead_letters_by_original_event() -> None:
    counts = EXAMPLES[EventType.COUNTS_UPDATED]
    windowed = route(new_event(EventType.COUNTS_UPDATED, counts, "test"))
    total = route(new_event(EventType.COUNTS_UPDATED, {**counts, "window": None}, "test"))
    assert (windowed.topic, windowed.key) == (COUNTS_WINDOWS, "class:glass@2026-03-01T12:00:00Z")
    assert (total.topic, total.key) == (COUNTS_TOTALS, "class:glass")
    dead = route(new_event(EventType.DEAD_LETTER, EXAMPLES[EventType.DEAD_LETTER], "test"))
    assert (dead.topic, dead.key) == (DEAD_LETTERS, CAPTURED_ID)
