"""The shared image rules: one acceptance check with reason codes, content-addressed keys under two prefixes,
and the retention rules that decide which objects the scoring worker may delete."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from minio.error import S3Error
from PIL import Image

from infra.image_retention import ImageRetention, Verdict, advisory_key, keeps_sample
from infra.images import HTTP_STATUS, ImageRefused, check_image, open_header
from schemas.codec import InvalidEvent, new_event
from schemas.events import DeadLetterReason, EventType
from schemas.image_keys import CAPTURES, DATASET_STORE, IMAGE_KEY, image_object_key
from tests.images import png_header_only

SHA = "0123456789abcdef" * 4
MAX_BYTES, MAX_PIXELS = 2_000_000, 4_000_000


def _jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(("data", "reason", "status"), [
    (b"plain text, no picture", "not_an_image", 415),
    (_jpeg()[:300], "truncated_image", 400),
    (b"", "truncated_image", 400),
    (png_header_only(5000, 5000), "too_many_pixels", 413),
    (png_header_only(100_000, 100_000), "too_many_pixels", 413),
    (b"\xff\xd8" + b"\0" * MAX_BYTES, "too_many_bytes", 413),
], ids=["text", "truncated", "empty", "pixels", "bomb", "bytes"])
def test_every_refusal_has_a_dead_letter_reason_and_an_http_status(data: bytes, reason: str, status: int) -> None:
    with pytest.raises(ImageRefused) as refused:
        check_image(data, MAX_BYTES, MAX_PIXELS)
    assert refused.value.reason == reason and refused.value.http_status == status
    assert DeadLetterReason(refused.value.reason)  # the scoring worker dead-letters with the same code


def test_every_reason_code_is_a_dead_letter_reason() -> None:
    assert {DeadLetterReason(reason) for reason in HTTP_STATUS} <= set(DeadLetterReason)


def test_the_header_check_reads_no_pixels_and_the_full_check_finds_a_cut_off_image() -> None:
    cut = _jpeg((320, 240))[:2000]
    assert open_header(cut, MAX_BYTES, MAX_PIXELS).size == (320, 240)
    with pytest.raises(ImageRefused, match="truncated"):
        check_image(cut, MAX_BYTES, MAX_PIXELS)
    assert check_image(_jpeg(), MAX_BYTES, MAX_PIXELS) == "image/jpeg"


def test_captures_and_the_dataset_store_have_their_own_prefix_and_the_same_digest() -> None:
    assert image_object_key(SHA, "image/png", CAPTURES) == f"captures/{SHA}.png"
    assert image_object_key(SHA, "image/png") == f"images/{SHA}.png"
    assert image_object_key(SHA, "image/jpeg", DATASET_STORE) == f"images/{SHA}.jpg"
    with pytest.raises(ValueError, match="captures or images"):
        image_object_key(SHA, "image/jpeg", "models")
    assert IMAGE_KEY.fullmatch(f"captures/{SHA}.jpg")["prefix"] == "captures"
    for key in (f"models/{SHA}.jpg", f"captures/{SHA}.exe", f"captures/../images/{SHA}.jpg",
                f"captures/{SHA[:-1]}.jpg"):
        assert IMAGE_KEY.fullmatch(key) is None


def test_the_lock_key_is_a_signed_64_bit_number_fixed_by_the_digest() -> None:
    keys = {advisory_key(digest) for digest in ("0" * 64, "f" * 64, "8" + "0" * 63, "7" + "f" * 63, SHA)}
    assert len(keys) == 5 and all(-2**63 <= key < 2**63 for key in keys)
    assert advisory_key(SHA) == advisory_key(SHA[:16] + "f" * 48)


def test_kept_samples_are_a_fixed_fraction_chosen_by_content() -> None:
    digests = [f"{value:08x}" + "0" * 56 for value in range(0, 2**32, 2**32 // 1000)]
    kept = [digest for digest in digests if keeps_sample(digest, 0.1)]
    assert 90 <= len(kept) <= 110
    assert not any(keeps_sample(digest, 0.0) for digest in digests)


@pytest.mark.parametrize("camera_id", ["cam 1", "cam\u00001", "site/7", "x" * 65])
def test_the_event_schema_refuses_camera_ids_the_ingest_refuses(camera_id: str) -> None:
    payload = {"bucket": "wastex-images", "object_key": f"captures/{SHA}.jpg", "sha256": SHA, "size_bytes": 10,
               "content_type": "image/jpeg", "camera_id": camera_id, "site_id": "site-1",
               "captured_at": "2026-03-01T12:00:00Z"}
    assert new_event(EventType.IMAGE_CAPTURED, {**payload, "camera_id": "cam-1"}, "producers")
    with pytest.raises(InvalidEvent):
        new_event(EventType.IMAGE_CAPTURED, payload, "producers")


class _Recording(ImageRetention):
    """Retention whose per-object decision is scripted: the worker's pass logic alone is under test."""

    def __init__(self, failures: dict[str, BaseException]) -> None:
        super().__init__(storage=None, engine=None, bucket="wastex-images", keep_rate=0.0)  # type: ignore[arg-type]
        self.failures = failures
        self.asked: list[str] = []

    def delete_unreferenced(self, key: str, not_modified_after: datetime) -> Verdict:
        self.asked.append(key)
        if key in self.failures:
            raise self.failures[key]
        return Verdict.DELETED


def _capture(index: int) -> tuple[str, str]:
    return "wastex-images", f"captures/{index:064x}.jpg"


def test_the_worker_deletes_only_captures_of_its_own_bucket() -> None:
    retention = _Recording({})
    targets = [_capture(1), ("wastex-images", f"images/{SHA}.jpg"), ("other-bucket", f"captures/{SHA}.jpg"),
               ("wastex-images", "captures/notes.txt"), _capture(2)]
    assert retention.delete_classified_captures(targets, 60).error is None
    assert retention.asked == [_capture(1)[1], _capture(2)[1]]


def test_a_passing_failure_hands_back_the_rest_and_a_bad_one_is_skipped() -> None:
    slow_down = S3Error(None, "SlowDown", "please reduce your request rate", "/images", "r", "h")  # type: ignore[arg-type]
    retention = _Recording({_capture(2)[1]: ValueError("odd object"), _capture(3)[1]: slow_down})
    targets = [_capture(index) for index in range(1, 6)]
    result = retention.delete_classified_captures(targets, 60)
    assert result.error is slow_down
    assert result.retry == targets[2:]
    assert retention.asked == [_capture(index)[1] for index in (1, 2, 3)]
