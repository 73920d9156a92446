"""The Sites page in headless Chromium: each camera's audited accuracy, OOD rate and silent miscounts, and the drift
mark of a drifting camera; and an audit item on the review page, confirmed with the accept key."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Page, expect

from infra.clients import db_sessions
from infra.db.models import CameraDrift, ReviewItem, ScoringTally
from infra.settings import Settings
from infra.topic_reader import TopicReader
from tests.review_ui_support import PASSWORD, LiveServer, add_operator, wait_until

MODEL = "m-sites-1"
CAPTURED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
DRIFTING_SINCE = datetime(2026, 3, 1, 8, 15, tzinfo=UTC)


def _audit_item(seed: int, camera: str, predicted: str, label: str | None) -> ReviewItem:
    sha256 = hashlib.sha256(f"sites-{seed}".encode()).hexdigest()
    return ReviewItem(
        source_event_id=f"00000000-0000-4000-8000-{seed:012d}", kind="audit", bucket="wastex-images",
        object_key=f"captures/{sha256}.jpg", sha256=sha256, camera_id=camera, site_id="site-east",
        captured_at=CAPTURED + timedelta(minutes=seed), flagged_at=CAPTURED + timedelta(minutes=seed, seconds=5),
        model_version=MODEL, predicted_class=predicted, confidence=0.93, energy=-9.5, reason="audit",
        classes=["metal", "glass"], probabilities=[0.93, 0.07] if predicted == "metal" else [0.07, 0.93],
        thresholds={}, status="pending" if label is None else "labelled", label=label,
        decided_by=None if label is None else "someone", decided_at=None if label is None else CAPTURED)


def _seed_rows(deployment: Settings) -> int:
    """cam-east-1: 4 audits, 3 right, 16 scored, 4 OOD, drifting; cam-east-2: 1 audit, right, 10 scored, 0 OOD;
    one pending audit on cam-east-2 (its id is returned)."""
    pending = _audit_item(9, "cam-east-2", "glass", None)
    with db_sessions(deployment).begin() as session:
        session.add_all([_audit_item(1, "cam-east-1", "metal", "metal"), _audit_item(2, "cam-east-1", "metal", "metal"),
                         _audit_item(3, "cam-east-1", "glass", "glass"), _audit_item(4, "cam-east-1", "metal", "glass"),
                         _audit_item(5, "cam-east-2", "glass", "glass"), pending])
        session.add_all([ScoringTally(day=date(2026, 3, 1), site_id="site-east", camera_id="cam-east-1",
                                      model_version=MODEL, classified=12, ood=4),
                         ScoringTally(day=date(2026, 3, 1), site_id="site-east", camera_id="cam-east-2",
                                      model_version=MODEL, classified=10, ood=0)])
        session.add(CameraDrift(camera_id="cam-east-1", site_id="site-east", model_version=MODEL, drifting=True,
                                images=60, ood_rate=0.4, energy_ks=0.52, median_energy_shift=2.1,
                                checked_at=DRIFTING_SINCE + timedelta(minutes=30), drifting_since=DRIFTING_SINCE))
        session.flush()
        return pending.id


def _sign_in(page: Page, server: LiveServer, username: str, target: str) -> None:
    page.goto(f"{server.url}{target}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(target) + "$"))


def test_the_sites_page_shows_each_cameras_audited_accuracy_and_marks_a_drifting_camera(
        page: Page, server: LiveServer, deployment: Settings, screenshots: Path) -> None:
    pending = _seed_rows(deployment)
    _sign_in(page, server, add_operator(deployment, "site-viewer", role="labeller"), "/accuracy")

    expect(page.locator("nav a.current")).to_have_text("Sites")
    drifting = page.locator('tr.camera-row[data-camera="cam-east-1"]')
    expect(drifting.locator(".audited")).to_have_text("4")
    expect(drifting.locator(".accuracy")).to_have_text("75.0%")
    expect(drifting.locator(".interval")).to_have_text("[30.1%, 95.4%]")  # Wilson, 3 of 4
    expect(drifting.locator(".ood-rate")).to_have_text("25.0%")
    expect(drifting.locator(".silent")).to_have_text("18.8%")  # (1 - 0.25) * (1 - 0.75)
    expect(drifting.locator(".drifting")).to_have_text(
        "drifting since 2026-03-01 08:15 UTC · OOD rate 40.0% · energy KS 0.52")
    steady = page.locator('tr.camera-row[data-camera="cam-east-2"]')
    expect(steady.locator(".accuracy")).to_have_text("100.0%")
    expect(steady.locator(".drifting")).to_have_count(0)
    expect(page.locator('.site[data-site="site-east"] tr.site-row .audited')).to_have_text("5")
    page.screenshot(path=str(screenshots / "accuracy.png"), full_page=True)
    (site,) = page.request.get(f"{server.url}/api/accuracy").json()["sites"]
    mark = next(row["drift"] for row in site["cameras"] if row["camera_id"] == "cam-east-1")
    assert mark["drifting"] and mark["since"] == "2026-03-01T08:15:00Z" and mark["energy_ks"] == 0.52

    page.goto(f"{server.url}/accuracy?since=2026-03-02")
    expect(page.locator("tr.camera-row")).to_have_count(0)

    # The pending audit: the page says what the model said, and the accept key confirms it.
    page.goto(f"{server.url}/review/{pending}")
    expect(page.locator("#audit-note")).to_contain_text("Audit: the model said glass (0.93)")
    expect(page.locator("#accept")).to_contain_text("Confirm")
    expect(page.locator("#review[data-ready=true]")).to_have_count(1)
    page.keyboard.press("r")
    expect(page.locator("#status")).to_contain_text("glass")

    def confirmed() -> list:
        labels = TopicReader.collect(deployment, 1, "labels")["labels"]
        return [e for e in labels if e.payload["review_kind"] == "audit"]

    (label,) = wait_until(confirmed, 30, "the confirmation on the label log")
    assert label.payload["label"] == "glass" and label.payload["site_id"] == "site-east"
