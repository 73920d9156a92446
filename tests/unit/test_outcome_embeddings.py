"""Flagged images and audit samples carry the model's embedding, rounded to 4 significant digits; ordinary
classified images, and every image of a model without embeddings, carry none."""

from __future__ import annotations

import hashlib

import numpy as np

from infra.image_retention import audits_sample
from schemas.codec import decode_event, encode, new_event
from schemas.events import EventType
from schemas.ood_scores import Thresholds
from stream_apps.scoring.active_model import ActiveModel
from stream_apps.scoring.batch import BatchScorer, CapturedRecord, Kind, PreparedBatch, compact_embedding
from stream_apps.scoring.decode import ImageLimits

AUDIT_RATE = 0.25
DIGESTS = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(200)]
AUDITED = next(d for d in DIGESTS if audits_sample(d, AUDIT_RATE))
ORDINARY = next(d for d in DIGESTS if not audits_sample(d, AUDIT_RATE))
FLAGGED = next(d for d in DIGESTS if d not in (AUDITED, ORDINARY))


class FixedRuntime:
    input_size = 4


def _batch(digests: list[str]) -> PreparedBatch:
    batch = PreparedBatch()
    for offset, digest in enumerate(digests):
        event = new_event(EventType.IMAGE_CAPTURED, {
            "bucket": "wastex-images", "object_key": f"captures/{digest}.jpg", "sha256": digest, "size_bytes": 10,
            "content_type": "image/jpeg", "camera_id": "cam-1", "site_id": "site-a",
            "captured_at": "2026-03-01T12:00:00Z"}, "test")
        batch.records.append(CapturedRecord("images.captured", 0, offset, b"cam-1", encode(event)))
        batch.events.append(event)
        batch.pixels.append(np.zeros((4, 4, 3), dtype=np.float32))
    return batch


def _route(embeddings: np.ndarray | None) -> dict[str, dict]:
    model = ActiveModel("m1", "ab" * 32, ["metal", "glass"], Thresholds(-5.0, 0.7), FixedRuntime())  # type: ignore[arg-type]
    logits = np.array([[9.0, 1.0], [1.0, 9.0], [0.0, 0.0]], dtype=np.float32)  # confident, confident, flat (OOD)
    outcomes = BatchScorer(None, ImageLimits(1, 1), audit_rate=AUDIT_RATE).route(  # type: ignore[arg-type]
        _batch([AUDITED, ORDINARY, FLAGGED]), logits, model, embeddings)
    assert [o.kind for o in outcomes] == [Kind.CLASSIFIED, Kind.CLASSIFIED, Kind.OOD]
    return {digest: decode_event(encode(o.event)).payload for digest, o in zip([AUDITED, ORDINARY, FLAGGED], outcomes,
                                                                                  strict=True)}


def test_flagged_and_audited_images_carry_the_rounded_embedding_and_ordinary_ones_do_not() -> None:
    embeddings = np.array([[0.123456, 98765.4321, 0.0], [1.0, 2.0, 3.0], [1e-7 * np.pi, -2.718281828, 5.5]])
    payloads = _route(embeddings)
    assert payloads[AUDITED]["embedding"] == [0.1235, 98770.0, 0.0]
    assert payloads[FLAGGED]["embedding"] == [3.142e-07, -2.718, 5.5]
    assert "embedding" not in payloads[ORDINARY]


def test_a_model_without_embeddings_sends_events_without_them() -> None:
    assert all("embedding" not in payload for payload in _route(None).values())


def test_rounding_keeps_four_significant_digits_at_any_scale() -> None:
    row = np.array([123456.7, 0.000123456, -1.23456], dtype=np.float32)
    np.testing.assert_allclose(compact_embedding(row), row, rtol=5e-4)
    assert compact_embedding(row) == [123500.0, 0.0001235, -1.235]
