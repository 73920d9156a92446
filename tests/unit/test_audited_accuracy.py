"""Audit sampling and the audited-accuracy arithmetic: which images are audited, the Wilson interval, the share of
silent miscounts, and what a scored batch says about its audit samples."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime

import numpy as np
import pytest

from infra.image_retention import ImageRetention, Verdict, audits_sample, keeps_sample
from review_ui.audited_accuracy import (
    AccuracyFilter,
    Figures,
    GroupKey,
    per_camera,
    per_site,
    silent_miscount_rate,
    wilson_interval,
)
from review_ui.projection import is_audit_sample
from review_ui.queue import QueryError, QueueFilter
from schemas.codec import encode, new_event
from schemas.events import EventType
from schemas.ood_scores import Thresholds
from stream_apps.scoring.active_model import ActiveModel
from stream_apps.scoring.batch import BatchScorer, CapturedRecord, Kind, PreparedBatch
from stream_apps.scoring.decode import ImageLimits

DIGESTS = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20_000)]


def test_the_wilson_interval_matches_the_formula_for_8_of_10() -> None:
    low, high = wilson_interval(8, 10)
    # (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n) with p = 0.8, n = 10, z = 1.959964
    assert low == pytest.approx(0.490162, abs=1e-5) and high == pytest.approx(0.943318, abs=1e-5)


def test_the_wilson_interval_stays_inside_0_and_1_and_is_none_before_any_answer() -> None:
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(5, 5)
    assert high == pytest.approx(1.0) and 0.5 < low < 0.6  # 5/5: [0.566, 1]
    low, high = wilson_interval(0, 5)
    assert low == pytest.approx(0.0, abs=1e-12) and 0.4 < high < 0.45


def test_the_silent_miscount_share_is_the_in_distribution_share_times_the_error_rate() -> None:
    assert silent_miscount_rate(0.25, 2 / 3) == pytest.approx(0.25)
    assert silent_miscount_rate(0.0, 1.0) == 0.0
    assert silent_miscount_rate(None, 0.9) is None and silent_miscount_rate(0.1, None) is None


def test_figures_sum_over_days_and_say_none_without_their_inputs() -> None:
    a, b = GroupKey("site-1", "cam-a", date(2026, 3, 1), "m1"), GroupKey("site-1", "cam-a", date(2026, 3, 2), "m1")
    c = GroupKey("site-1", "cam-b", date(2026, 3, 1), "m1")
    groups = {a: Figures(audited=2, correct=1, classified=10, ood=2), b: Figures(audited=1, correct=1, classified=2),
              c: Figures(classified=4, ood=4)}
    camera = per_camera(groups)
    summed = camera[("site-1", "cam-a", "m1")].as_dict()
    assert summed["audited"] == 3 and summed["correct"] == 2 and summed["scored"] == 14 and summed["ood"] == 2
    assert summed["ood_rate"] == pytest.approx(2 / 14)
    assert summed["silent_miscount_rate"] == pytest.approx((12 / 14) * (1 / 3))
    unaudited = camera[("site-1", "cam-b", "m1")].as_dict()
    assert unaudited["accuracy"] is None and unaudited["interval"] is None and unaudited["ood_rate"] == 0.5
    assert unaudited["silent_miscount_rate"] is None
    assert per_site(groups)[("site-1", "m1")].as_dict()["scored"] == 22
    assert Figures().as_dict()["ood_rate"] is None


def test_the_accuracy_filter_takes_days_and_refuses_anything_else() -> None:
    selection = AccuracyFilter.from_args({"since": "2026-03-01", "until": "2026-03-02", "model": "m1"})
    assert selection == AccuracyFilter(date(2026, 3, 1), date(2026, 3, 2), "m1")
    assert AccuracyFilter.from_args(selection.to_args()) == selection
    with pytest.raises(ValueError, match="since must be a day"):
        AccuracyFilter.from_args({"since": "yesterday"})
    with pytest.raises(ValueError, match="not be after"):
        AccuracyFilter.from_args({"since": "2026-03-02", "until": "2026-03-01"})


def test_audits_are_chosen_by_content_at_the_rate_and_independently_of_kept_samples() -> None:
    audited = [d for d in DIGESTS if audits_sample(d, 0.25)]
    kept = [d for d in DIGESTS if keeps_sample(d, 0.25)]
    assert len(audited) / len(DIGESTS) == pytest.approx(0.25, abs=0.015)
    both = len(set(audited) & set(kept)) / len(DIGESTS)
    assert both == pytest.approx(0.25 * 0.25, abs=0.01)  # independent slices of the digest
    assert not any(audits_sample(d, 0.0) for d in DIGESTS) and all(audits_sample(d, 1.0) for d in DIGESTS)
    assert audits_sample("ffffffff" + "00000000" + "0" * 48, 0.01) and not keeps_sample("ffffffff" + "0" * 56, 0.99)


class FixedRuntime:
    input_size = 4


def _record(offset: int, sha256: str) -> tuple[CapturedRecord, object]:
    payload = {"bucket": "wastex-images", "object_key": f"captures/{sha256}.jpg", "sha256": sha256,
               "size_bytes": 10, "content_type": "image/jpeg", "camera_id": "cam-1", "site_id": "site-a",
               "captured_at": "2026-03-01T12:00:00Z"}
    event = new_event(EventType.IMAGE_CAPTURED, payload, "test")
    return CapturedRecord("images.captured", 0, offset, b"cam-1", encode(event)), event


def test_an_audit_sample_carries_its_probabilities_is_kept_and_an_ordinary_image_is_handed_to_deletion() -> None:
    audited = next(d for d in DIGESTS if audits_sample(d, 0.25) and not keeps_sample(d, 0.0))
    ordinary = next(d for d in DIGESTS if not audits_sample(d, 0.25))
    batch = PreparedBatch()
    for offset, digest in enumerate([audited, ordinary]):
        record, event = _record(offset, digest)
        batch.records.append(record)
        batch.events.append(event)
        batch.pixels.append(np.zeros((4, 4, 3), dtype=np.float32))
    model = ActiveModel("m1", "ab" * 32, ["metal", "glass"], Thresholds(-5.0, 0.7), FixedRuntime())  # type: ignore[arg-type]
    logits = np.array([[9.0, 1.0], [1.0, 9.0]], dtype=np.float32)  # both confidently in distribution

    first, second = BatchScorer(None, ImageLimits(1, 1), audit_rate=0.25).route(batch, logits, model)  # type: ignore[arg-type]

    assert first.kind is second.kind is Kind.CLASSIFIED
    assert first.event.payload["audit"] is True and first.event.payload["classes"] == ["metal", "glass"]
    assert first.event.payload["probabilities"][0] == pytest.approx(1 / (1 + np.exp(-8)), rel=1e-5)
    assert first.delete_after is None
    assert "audit" not in second.event.payload and "probabilities" not in second.event.payload
    assert second.delete_after == ("wastex-images", f"captures/{ordinary}.jpg")
    encode(first.event)  # valid against ImageClassified's schema
    assert is_audit_sample(encode(first.event)) and not is_audit_sample(encode(second.event))


def test_only_a_record_that_says_audit_true_is_an_audit_sample() -> None:
    assert not is_audit_sample(b'{"payload": {"audit": false}}')
    assert not is_audit_sample(b'{"audit": true, not json')
    assert not is_audit_sample(json.dumps(["audit", True]).encode())
    assert is_audit_sample(b'{"payload": {"audit": true}}')


def test_retention_never_deletes_an_audit_sample_even_before_its_review_row_exists() -> None:
    audited = next(d for d in DIGESTS if audits_sample(d, 0.25) and not keeps_sample(d, 0.25))
    # No database and no store: an audit sample is decided on its digest alone, before anything is looked up.
    retention = ImageRetention(storage=None, engine=None, bucket="wastex-images", keep_rate=0.25,  # type: ignore[arg-type]
                               audit_rate=0.25)
    assert retention.delete_unreferenced(f"captures/{audited}.jpg", datetime.now(UTC)) is Verdict.AUDIT_SAMPLE


def test_the_queue_filters_by_kind_keeps_it_in_links_and_refuses_an_unknown_kind() -> None:
    audits = QueueFilter.from_args({"kind": "audit", "status": "all"})
    assert audits.kind == "audit" and audits.to_args() == {"kind": "audit", "status": "all"}
    assert QueueFilter.from_args({}).kind == "all" and "kind" not in QueueFilter().to_args()
    assert "review_items.kind = :kind_1" in str(audits.query())
    with pytest.raises(QueryError, match="kind must be one of all, ood, audit"):
        QueueFilter.from_args({"kind": "drift"})
