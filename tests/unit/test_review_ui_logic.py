"""Pure logic of the review UI: names, keys, filters, redirects, chart series, label events, image checks."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from infra.images import ImageRefused, check_image
from review_ui.class_registry import ClassNameError, normalise_class_name
from review_ui.counts_view import WindowKey, minute_series
from review_ui.image_proxy import ForbiddenKey, checked_key, thumbnail
from review_ui.label_events import LabelContext, event_id_for, image_discarded, label_assigned, label_retracted
from review_ui.operators import OperatorError, check_username
from review_ui.queue import QueryError, QueueFilter, parse_paging, top_probabilities
from review_ui.security import safe_next
from review_ui.views.pages import readable_rule
from schemas.codec import encode
from schemas.events import EventType, route
from schemas.image_keys import image_object_key as object_key

SHA = "ab" * 32


def _jpeg(size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 30, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(("raw", "expected"), [
    ("Glass", "Glass"),
    ("  Miscellaneous \t  Trash ", "Miscellaneous Trash"),
    ("<b>bold</b>", "<b>bold</b>"),  # markup is allowed as text; pages escape it
])
def test_class_names_are_trimmed_and_collapsed(raw: str, expected: str) -> None:
    assert normalise_class_name(raw) == expected


@pytest.mark.parametrize(("raw", "message"), [
    ("", "required"),
    ("   ", "required"),
    ("x" * 65, "at most 64"),
    ("bad\x00name", "control"),
    ("zero\u200bwidth", "control"),
])
def test_bad_class_names_are_refused_with_the_reason(raw: str, message: str) -> None:
    with pytest.raises(ClassNameError, match=message):
        normalise_class_name(raw)


def test_only_content_addressed_image_keys_pass_the_proxy() -> None:
    assert checked_key(f"images/{SHA}.jpg") == ("image/jpeg", SHA)
    assert checked_key(f"images/{SHA}.png") == ("image/png", SHA)
    for key in (f"../wastex-models/images/{SHA}.jpg", f"images/../models/{SHA}.jpg", f"images/{SHA}.jpg/../x",
                f"images/{SHA.upper()}.jpg", f"images/{SHA}.html", f"datasets/{SHA}.jpg", f"/images/{SHA}.jpg",
                f"images/{SHA}.jpg\n", "images/", f"images%2F{SHA}.jpg", f"s3://wastex-models/images/{SHA}.jpg"):
        with pytest.raises(ForbiddenKey):
            checked_key(key)


def test_thumbnails_are_small_jpegs_and_huge_claims_are_refused() -> None:
    small = Image.open(io.BytesIO(thumbnail(_jpeg((1200, 900)), 40_000_000)))
    assert small.format == "JPEG" and max(small.size) <= 240
    with pytest.raises(ValueError, match="pixels"):
        thumbnail(_jpeg((1200, 900)), 1_000)


def test_queue_filter_parses_defaults_and_round_trips() -> None:
    assert QueueFilter.from_args({}) == QueueFilter()
    args = {"status": "all", "camera": "cam-1", "predicted": "glass", "since": "2026-01-01T10:00",
            "until": "2026-01-02T00:00+01:00", "sort": "newest"}
    parsed = QueueFilter.from_args(args)
    assert parsed.since == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert parsed.until.utcoffset() == timedelta(hours=1)
    assert QueueFilter.from_args(parsed.to_args()) == parsed
    assert QueueFilter().to_args() == {}


@pytest.mark.parametrize(("args", "message"), [
    ({"status": "done"}, "status must be one of"),
    ({"sort": "random"}, "sort must be one of"),
    ({"since": "yesterday"}, "since must be a date-time"),
    ({"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"}, "since must be before until"),
])
def test_bad_filters_name_the_parameter(args: dict[str, str], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        QueueFilter.from_args(args)


def test_paging_is_bounded() -> None:
    assert parse_paging({}) == (1, 24)
    assert parse_paging({"page": "3", "per_page": "100"}) == (3, 100)
    for bad in ({"page": "0"}, {"per_page": "101"}, {"page": "two"}):
        with pytest.raises(QueryError):
            parse_paging(bad)


def test_top_probabilities_are_the_five_largest_in_order() -> None:
    top = top_probabilities(["a", "b", "c", "d", "e", "f"], [0.05, 0.4, 0.1, 0.2, 0.15, 0.1])
    assert [entry["class"] for entry in top] == ["b", "d", "e", "c", "f"]
    assert top[0]["probability"] == 0.4


@pytest.mark.parametrize(("target", "expected"), [
    ("/queue?camera=cam-1", "/queue?camera=cam-1"),
    ("/review/7", "/review/7"),
    (None, "/queue"),
    ("//evil.example/queue", "/queue"),
    ("https://evil.example/", "/queue"),
    ("/\\evil.example", "/queue"),
    ("queue", "/queue"),
])
def test_sign_in_only_redirects_within_the_site(target: str | None, expected: str) -> None:
    assert safe_next(target, "/queue") == expected


def test_minute_series_fills_the_last_hour_with_zeros() -> None:
    now = datetime(2026, 3, 1, 12, 30, 40, tzinfo=UTC)
    minute = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    windows = {
        WindowKey("class", "glass", minute): 4,
        WindowKey("class", "glass", minute - timedelta(minutes=59)): 2,
        WindowKey("class", "metal", minute - timedelta(minutes=1)): 7,
        WindowKey("class", "paper", minute - timedelta(minutes=60)): 9,  # just outside the hour
        WindowKey("camera", "cam-1", minute): 11,
    }
    history = minute_series(windows, "class", now, 60)
    assert len(history["minutes"]) == 60
    assert history["minutes"][-1] == "2026-03-01T12:30:00.000Z"
    assert history["minutes"][0] == "2026-03-01T11:31:00.000Z"
    assert set(history["series"]) == {"glass", "metal"}
    assert history["series"]["glass"][-1] == 4 and history["series"]["glass"][0] == 2
    assert history["series"]["metal"][-2] == 7 and sum(history["series"]["metal"]) == 7


def test_label_events_are_valid_keyed_by_image_and_named_by_their_action() -> None:
    context = LabelContext("wastex-images", f"images/{SHA}.jpg", SHA, "m-1", "0b7e1a52-3c4d-4e5f-8a9b-0c1d2e3f4a5b")
    assigned = label_assigned(context, "Glass", "alice", "act-12345678/7", new_class=True)
    discarded = image_discarded(context, "not waste", "alice", "act-12345678/8")
    retracted = label_retracted(context, assigned.event_id, "alice", "act-87654321/7")
    for event in (assigned, discarded, retracted):
        encode(event)
        assert route(event).key == SHA and route(event).topic.name == "labels"
    assert assigned.event_id == event_id_for("act-12345678/7")  # a retried action cannot get a second id
    assert assigned.event_id != discarded.event_id
    assert retracted.event_type is EventType.LABEL_RETRACTED
    assert retracted.payload["retracted_event_id"] == assigned.event_id
    imported = label_assigned(LabelContext("wastex-images", f"images/{SHA}.jpg", SHA), "Glass", "bob", "import/x/y",
                              new_class=False)
    assert imported.payload["flagged_by_model_version"] is None and imported.payload["source_event_id"] is None


def test_imported_files_must_be_complete_images_within_the_limits() -> None:
    data = _jpeg()
    assert check_image(data, 1_000_000, 1_000_000) == "image/jpeg"
    assert object_key(SHA, "image/jpeg") == f"images/{SHA}.jpg"
    with pytest.raises(ImageRefused, match="not an image"):
        check_image(b"<html>not a picture</html>", 1_000_000, 1_000_000)
    with pytest.raises(ImageRefused, match="truncated"):
        check_image(data[: len(data) // 2], 1_000_000, 1_000_000)
    with pytest.raises(ImageRefused, match="too large"):
        check_image(data, 10, 1_000_000)
    with pytest.raises(ImageRefused, match="too many pixels"):
        check_image(data, 1_000_000, 100)
    with pytest.raises(ImageRefused, match="empty"):
        check_image(b"", 1_000_000, 1_000_000)


def test_usernames_are_identifiers() -> None:
    assert check_username("alice.o-1") == "alice.o-1"
    for bad in ("", "al ice", "-alice", "x" * 65, "<script>"):
        with pytest.raises(OperatorError):
            check_username(bad)


def test_api_paths_are_documented_readably() -> None:
    assert readable_rule("/api/ood/<int:item_id>/<any(next, prev):direction>") == "/api/ood/<item_id>/next|prev"
    assert readable_rule("/images/<path:key>") == "/images/<key>"
