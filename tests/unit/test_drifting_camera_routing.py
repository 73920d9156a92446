"""A camera the scoring monitor marks drifting is judged with the model's stricter thresholds: the same image that
another camera's outcome counts goes to review, the outcome says why, and the drift check still counts only what
the regular thresholds flag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from review_ui.scoring_monitor import observation
from schemas.codec import decode_event, encode, new_event
from schemas.events import EventType
from schemas.model_artefact import ArtefactInfo, read_artefact_info, write_artefact_info
from schemas.ood_scores import Thresholds
from stream_apps.scoring.active_model import ActiveModel
from stream_apps.scoring.batch import BatchScorer, CapturedRecord, Kind, PreparedBatch
from stream_apps.scoring.camera_drift import DriftingCameras
from stream_apps.scoring.decode import ImageLimits

pytestmark = pytest.mark.unit

REGULAR, STRICT = Thresholds(-5.0, 0.7), Thresholds(-6.0, 0.95)
# Softmax 0.88 and energy about -8: counted by the regular pair, flagged by the stricter one's softmax rule.
MARGINAL = [6.0, 4.0]
# Softmax 0.62, energy -3: flagged by both rules of both pairs.
UNSURE = [2.5, 2.0]


class FixedRuntime:
    input_size = 4


def _drift_event(camera: str, state: str):
    return new_event(EventType.CAMERA_DRIFT_DETECTED, {
        "camera_id": camera, "site_id": "site-b", "state": state, "model_version": "m1",
        "window": {"start": "2026-03-01T11:00:00Z", "end": "2026-03-01T12:00:00Z"}, "images": 60,
        "ood_rate": 0.4, "expected_ood_rate": 0.05, "energy_ks": 0.5, "median_energy_shift": 2.0,
        "limits": {"ood_rate": 0.25, "energy_ks": 0.3, "min_images": 50, "window_s": 3600.0},
        "reasons": ["ood_rate", "energy_ks"] if state == "drifting" else []}, "test")


def _route(cameras: list[str], logits: list[list[float]], drifting: DriftingCameras,
           strict: Thresholds | None = STRICT) -> list[tuple[Kind, dict]]:
    batch = PreparedBatch()
    for offset, camera in enumerate(cameras):
        digest = f"{offset:064x}"
        event = new_event(EventType.IMAGE_CAPTURED, {
            "bucket": "wastex-images", "object_key": f"captures/{digest}.jpg", "sha256": digest, "size_bytes": 10,
            "content_type": "image/jpeg", "camera_id": camera, "site_id": "site-b",
            "captured_at": "2026-03-01T12:00:00Z"}, "test")
        batch.records.append(CapturedRecord("images.captured", 0, offset, camera.encode(), encode(event)))
        batch.events.append(event)
        batch.pixels.append(np.zeros((4, 4, 3), dtype=np.float32))
    model = ActiveModel("m1", "ab" * 32, ["metal", "glass"], REGULAR, FixedRuntime(),  # type: ignore[arg-type]
                        drifting_camera=strict)
    scorer = BatchScorer(None, ImageLimits(1, 1), drifting_cameras=drifting)  # type: ignore[arg-type]
    outcomes = scorer.route(batch, np.array(logits, dtype=np.float32), model)
    # Through the codec: every outcome must pass its contract.
    return [(outcome.kind, decode_event(encode(outcome.event)).payload) for outcome in outcomes]


def test_a_drifting_cameras_marginal_image_goes_to_review_where_another_cameras_is_counted() -> None:
    drifting = DriftingCameras()
    drifting.apply(_drift_event("cam-floor", "drifting"))
    (steady_kind, steady), (floor_kind, floor) = _route(["cam-board", "cam-floor"], [MARGINAL, MARGINAL], drifting)
    assert steady_kind is Kind.CLASSIFIED and "camera_drifting" not in steady
    assert floor_kind is Kind.OOD and floor["camera_drifting"] is True
    assert floor["reason"] == "softmax" and floor["regular_reason"] is None
    assert floor["thresholds"] == {"tau_energy": STRICT.tau_energy, "tau_softmax": STRICT.tau_softmax}


def test_an_image_both_pairs_flag_says_what_the_regular_pair_decided_and_a_confident_one_is_still_counted() -> None:
    drifting = DriftingCameras()
    drifting.apply(_drift_event("cam-floor", "drifting"))
    (unsure_kind, unsure), (sure_kind, sure) = _route(["cam-floor", "cam-floor"], [UNSURE, [12.0, 0.0]], drifting)
    assert unsure_kind is Kind.OOD and unsure["regular_reason"] == "both"
    assert sure_kind is Kind.CLASSIFIED and sure["camera_drifting"] is True and sure["predicted_class"] == "metal"


def test_a_recovered_camera_and_a_model_without_a_stricter_pair_are_judged_with_the_regular_pair() -> None:
    drifting = DriftingCameras()
    for camera, state in [("cam-1", "drifting"), ("cam-2", "drifting"), ("cam-1", "recovered")]:
        drifting.apply(_drift_event(camera, state))
    assert "cam-2" in drifting and "cam-1" not in drifting
    kinds = [kind for kind, _ in _route(["cam-1", "cam-2"], [MARGINAL, MARGINAL], drifting)]
    assert kinds == [Kind.CLASSIFIED, Kind.OOD]
    (kind, payload), = _route(["cam-2"], [MARGINAL], drifting, strict=None)
    assert kind is Kind.CLASSIFIED and payload["camera_drifting"] is True


def test_the_drift_check_counts_only_what_the_regular_pair_flags() -> None:
    drifting = DriftingCameras()
    drifting.apply(_drift_event("cam-floor", "drifting"))
    routed = _route(["cam-floor", "cam-floor", "cam-board"], [MARGINAL, UNSURE, UNSURE], drifting)
    assert [observation(payload, kind is Kind.OOD).ood for kind, payload in routed] == [False, True, True]


def test_the_stricter_pair_travels_with_the_artefact_and_an_older_artefact_has_none(tmp_path: Path) -> None:
    write_artefact_info(tmp_path, ArtefactInfo(["metal", "glass"], REGULAR.tau_energy, REGULAR.tau_softmax,
                                               drifting_camera=STRICT))
    info = read_artefact_info(tmp_path)
    assert info.thresholds == REGULAR and info.drifting_camera_thresholds == STRICT
    write_artefact_info(tmp_path, ArtefactInfo(["metal", "glass"], REGULAR.tau_energy, REGULAR.tau_softmax))
    assert read_artefact_info(tmp_path).drifting_camera_thresholds == REGULAR
