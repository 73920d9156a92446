"""An operator in headless Chromium opens the Groups view, looks through a group, unticks the odd one and labels
the rest in one action."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import numpy as np
from playwright.sync_api import Page, expect
from sqlalchemy import select

from infra.db.models import ReviewItem
from infra.settings import Settings
from infra.topic_reader import TopicReader
from schemas.codec import new_event
from schemas.events import Event, EventType
from tests.review_ui_support import CLASSES, PASSWORD, FlaggedImages, LiveServer, add_operator, wait_until

CAMERA = "cam-groups-browser"


def _with_embedding(event: Event, direction: int, seed: int) -> Event:
    """The event with an embedding near one axis of an 8-dimensional space (look-alikes share the axis)."""
    embedding = np.random.default_rng(seed).normal(0, 0.02, 8)
    embedding[direction] += 1.0
    return new_event(EventType.IMAGE_FLAGGED_OOD, {**event.payload, "embedding": [float(v) for v in embedding]},
                     event.source, event_id=event.event_id)


def test_an_operator_labels_a_group_of_look_alikes_in_one_action_after_unticking_the_odd_one(
        page: Page, server: LiveServer, flagged: FlaggedImages, deployment: Settings, screenshots: Path) -> None:
    events = [_with_embedding(flagged.event(8000 + i, camera=CAMERA), 0, i) for i in range(4)]
    events += [_with_embedding(flagged.event(8100 + i, camera=CAMERA), 1, 100 + i) for i in range(2)]
    flagged.publish(events)
    with server.services.sessions() as session:
        wait_until(lambda: len(session.scalars(select(ReviewItem.id).where(ReviewItem.camera_id == CAMERA)).all())
                   == 6, 30, "the projection")

    page.goto(f"{server.url}/queue?camera={CAMERA}")
    page.fill("input[name=username]", add_operator(deployment, f"op-{uuid.uuid4().hex[:6]}"))
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.click("#groups-link")
    expect(page).to_have_url(re.compile(rf"/queue/groups\?camera={CAMERA}$"))
    groups = page.locator("#group-list .group")
    expect(groups).to_have_count(2)
    first = groups.first
    expect(first.locator(".group-size")).to_have_text("4 images")

    first.locator("summary").click()
    cards = first.locator(".card")
    expect(cards).to_have_count(4)
    page.wait_for_function("[...document.querySelectorAll('.group details[open] .card img')]"
                           ".every(i => i.complete && i.naturalWidth)")
    odd = cards.nth(3)
    odd_id = int(odd.get_attribute("data-id") or 0)
    odd.locator(".select").uncheck()
    expect(first.locator(".selected-count")).to_have_text("3 selected")
    first.locator(".group-class").select_option(CLASSES[2])
    page.screenshot(path=str(screenshots / "groups.png"), full_page=True)
    first.locator(".label-group").click()
    expect(page.locator("#status")).to_have_text(f"Labelled 3 images as “{CLASSES[2]}”.")
    expect(cards).to_have_count(1)
    expect(cards.first).to_have_attribute("data-id", str(odd_id))

    shas = {event.payload["image"]["sha256"] for event in events[:4]}
    reader = TopicReader(deployment, "labels")
    try:
        def labelled() -> list[Event]:
            reader.poll(0.5)
            return [e for e in reader.events["labels"] if e.payload["image"]["sha256"] in shas]
        wait_until(lambda: len(labelled()) >= 3, 30, "the label events")
        reader.poll(2.0)
    finally:
        reader.close()
    labels = [e for e in reader.events["labels"] if e.payload["image"]["sha256"] in shas]
    assert len(labels) == 3 and {e.payload["label"] for e in labels} == {CLASSES[2]}
    with server.services.sessions() as session:
        assert session.get(ReviewItem, odd_id).status == "pending"
