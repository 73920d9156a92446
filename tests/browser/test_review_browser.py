"""An operator in headless Chromium: sign in, label with the keyboard, create a class, undo, discard, counts."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Page, expect
from sqlalchemy import select

from infra.db.models import ReviewItem
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topic_reader import TopicReader
from schemas.codec import new_event
from schemas.events import EventType, format_timestamp
from tests.review_ui_support import CLASSES, PASSWORD, FlaggedImages, LiveServer, add_operator, wait_until


def _sign_in(page: Page, server: LiveServer, username: str, target: str) -> None:
    page.goto(f"{server.url}{target}")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(target) + "$"))


def _queue(server: LiveServer, flagged: FlaggedImages, camera: str, energies: list[float], seed: int) -> list[int]:
    now = datetime.now(UTC)
    flagged.publish([flagged.event(seed + i, camera=camera, energy=energy,
                                   captured_at=now - timedelta(minutes=3 * i)) for i, energy in enumerate(energies)])
    services = server.services

    def projected() -> list[int]:
        with services.sessions() as session:
            return list(session.scalars(select(ReviewItem.id).where(ReviewItem.camera_id == camera)
                                        .order_by(ReviewItem.energy.desc())))

    return wait_until(lambda: len(ids := projected()) == len(energies) and ids, 30, "the projection")


def _labels_for(deployment: Settings, shas: set[str], expected: int) -> list:
    """The label events of these images, once `expected` arrived, plus anything (a duplicate) a moment later."""
    reader = TopicReader(deployment, "labels")
    try:
        wait_until(lambda: reader.poll(0.5) or len(_of(reader, shas)) >= expected, 30, "the label events")
        reader.poll(2.0)
    finally:
        reader.close()
    return _of(reader, shas)


def _of(reader: TopicReader, shas: set[str]) -> list:
    return [e for e in reader.events["labels"] if e.payload["image"]["sha256"] in shas]


def test_an_operator_labels_creates_a_class_undoes_and_discards_with_the_keyboard(
        page: Page, server: LiveServer, flagged: FlaggedImages, deployment: Settings, screenshots: Path) -> None:
    ids = _queue(server, flagged, "cam-browser", [-0.5, -1.0, -1.5, -2.0], 7000)
    username = add_operator(deployment, f"op-{uuid.uuid4().hex[:6]}")
    _sign_in(page, server, username, "/queue?camera=cam-browser")
    expect(page.locator("#grid .card")).to_have_count(4)
    expect(page.locator("#grid .card img").first).to_have_js_property("complete", True)
    page.wait_for_function("[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth)")
    page.screenshot(path=str(screenshots / "queue.png"), full_page=True)

    # Enter opens the focused (first, most uncertain) card; from there on no page is loaded again.
    expect(page.locator("#grid .card").first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/review/{ids[0]}\?camera=cam-browser$"))
    expect(page.locator("#review")).to_have_attribute("data-ready", "true")
    page.evaluate("window.__sameDocument = true")

    page.keyboard.press("1")  # the first registered class: the model's first class
    expect(page.locator("#status")).to_have_text(f"Labelled image {ids[0]} as “{CLASSES[0]}”.")
    expect(page.locator("#item-id")).to_have_text(str(ids[1]))
    expect(page).to_have_url(re.compile(rf"/review/{ids[1]}"))
    page.wait_for_function("document.getElementById('item-image').complete")
    page.screenshot(path=str(screenshots / "review.png"), full_page=True)

    page.keyboard.press("n")
    expect(page.locator("#new-class-name")).to_be_focused()
    page.keyboard.type("Textile")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text(f"Labelled image {ids[1]} as “Textile” (new class).")
    expect(page.locator("#classbar .class-btn", has_text="Textile")).to_have_count(1)
    expect(page.locator("#item-id")).to_have_text(str(ids[2]))

    page.keyboard.press("u")
    expect(page.locator("#status")).to_have_text(f"Undone: image {ids[1]} restored.")
    expect(page.locator("#item-id")).to_have_text(str(ids[1]))
    expect(page.locator("#item-state")).to_have_text("pending")

    page.keyboard.press("x")
    expect(page.locator("#status")).to_have_text(f"Discarded image {ids[1]}.")
    expect(page.locator("#item-id")).to_have_text(str(ids[2]))
    page.keyboard.press("ArrowRight")
    expect(page.locator("#item-id")).to_have_text(str(ids[3]))
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#item-id")).to_have_text(str(ids[2]))
    expect(page.locator("#alert")).to_be_hidden()
    assert page.evaluate("window.__sameDocument") is True  # every step happened without a page load

    with server.services.sessions() as session:
        shas = {session.get(ReviewItem, i).sha256: i for i in ids}
    events = _labels_for(deployment, set(shas), 4)
    assert len({e.event_id for e in events}) == len(events), "an event appeared twice on the label topic"
    seen = Counter((shas[e.payload["image"]["sha256"]], e.event_type, e.payload.get("label")) for e in events)
    assert seen == {
        (ids[0], EventType.LABEL_ASSIGNED, CLASSES[0]): 1,
        (ids[1], EventType.LABEL_ASSIGNED, "Textile"): 1,
        (ids[1], EventType.LABEL_RETRACTED, None): 1,
        (ids[1], EventType.IMAGE_DISCARDED, None): 1,
    }
    textile = next(e for e in events if e.payload.get("label") == "Textile")
    retracted = next(e for e in events if e.event_type is EventType.LABEL_RETRACTED)
    assert textile.payload["new_class"] is True and textile.payload["operator_id"] == username
    assert retracted.payload["retracted_event_id"] == textile.event_id


def test_the_queue_page_selects_and_bulk_labels_with_keys(page: Page, server: LiveServer, flagged: FlaggedImages,
                                                          deployment: Settings) -> None:
    ids = _queue(server, flagged, "cam-bulk", [-0.7, -1.2, -1.9], 7100)
    _sign_in(page, server, add_operator(deployment, f"bulk-{uuid.uuid4().hex[:6]}"), "/queue?camera=cam-bulk")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#grid .card").first).to_be_focused()
    page.keyboard.press(" ")
    page.keyboard.press("ArrowRight")
    page.keyboard.press(" ")
    expect(page.locator("#selected-count")).to_have_text("2 selected")
    page.keyboard.press("2")
    expect(page.locator("#status")).to_have_text(f"Labelled 2 images as “{CLASSES[1]}”.")
    expect(page.locator("#grid .card")).to_have_count(1)
    expect(page.locator("#grid .card")).to_have_attribute("data-id", str(ids[2]))
    page.keyboard.press("u")
    expect(page.locator("#status")).to_have_text("Undone: 2 images restored.")
    expect(page.locator("#grid .card")).to_have_count(3)
    assert page.evaluate("window.__sameDocument") is True


def test_the_counts_page_follows_the_count_topics(page: Page, server: LiveServer, deployment: Settings,
                                                  screenshots: Path) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    publisher = EventPublisher(deployment)

    def count(scope: str, key: str, value: int, start: datetime | None = None) -> None:
        window = None if start is None else {"start": format_timestamp(start),
                                             "end": format_timestamp(start + timedelta(minutes=1))}
        publisher.publish(new_event(EventType.COUNTS_UPDATED, {"scope": scope, "key": key, "window": window,
                                                               "count": value, "as_of": format_timestamp(now)},
                                    "scoring"))

    totals = {"cardboard": 412, "glass": 951, "metal": 388, "paper": 1204, "plastic": 730}
    for index, (name, total) in enumerate(totals.items()):
        count("class", name, total)
        for minute in range(60):
            count("class", name, (minute * (index + 3)) % 17 + 3 * index, now - timedelta(minutes=minute))
    for camera, total in (("cam-1", 1890), ("cam-2", 1795)):
        count("camera", camera, total)
    publisher.flush()

    _sign_in(page, server, add_operator(deployment, f"counts-{uuid.uuid4().hex[:6]}"), "/counts")
    expect(page.locator("#class-counts tr")).to_have_count(5, timeout=15_000)  # polled live, no reload
    expect(page.locator("#class-total")).to_have_text(str(sum(totals.values())))
    expect(page.locator("#camera-counts tr")).to_have_count(2)
    expect(page.locator("#chart polyline")).to_have_count(5)
    expect(page.locator("#legend li")).to_have_count(5)
    count("class", "glass", 1000)
    publisher.flush()
    expect(page.locator("#class-counts tr", has_text="glass")).to_contain_text("1000", timeout=15_000)
    page.screenshot(path=str(screenshots / "counts.png"), full_page=True)
