"""The watch-folder against the real MinIO and Kafka: complete files are captured and moved, refused ones are
set aside with their reason, and a store outage leaves files in place for the next poll."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from minio import Minio
from PIL import Image

from infra.clients import minio_client
from infra.publisher import EventPublisher, PublishError
from infra.settings import Settings
from producers.capture import CaptureSink
from producers.upload_checks import open_sink
from producers.watch_folder import FolderWatcher, Outcome, WatchResult
from schemas.image_keys import CAPTURES, image_object_key
from tests.integration.captured_tail import CapturedTail


def _image(image_format: str, size: tuple[int, int] = (320, 240)) -> bytes:
    """A picture no other test uploads, so removing its object afterwards cannot disturb anyone."""
    pixels = np.random.default_rng().integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()


class LostAcknowledgement(CaptureSink):
    """The broker keeps the first event but its acknowledgement never arrives."""

    lost = False

    def flush(self, timeout_s: float = 30.0) -> None:
        super().flush(timeout_s)
        if not self.lost:
            self.lost = True
            raise PublishError("acknowledgement lost (simulated)")


@pytest.fixture()
def camera() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "drop"
    path.mkdir()
    return path


@pytest.fixture()
def sink(settings: Settings) -> CaptureSink:
    return open_sink(settings)


@pytest.fixture()
def tail(settings: Settings) -> Iterator[CapturedTail]:
    reader = CapturedTail(settings)
    yield reader
    reader.close()


def _keys(results: list[WatchResult]) -> list[str]:
    return [r.event.payload["object_key"] for r in results if r.event]


def _watcher(folder: Path, sink: CaptureSink, camera: str, settings: Settings, settle_s: float = 0.0,
             poll_s: float = 1.0) -> FolderWatcher:
    return FolderWatcher(folder, sink, camera, "site-watch", poll_s=poll_s, settle_s=settle_s,
                         max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
                         clock_skew_s=settings.clock_skew_s)


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_images_are_captured_and_moved_and_the_rest_refused_with_a_reason(
        folder: Path, sink: CaptureSink, tail: CapturedTail, uploaded: list[str], storage: Minio,
        settings: Settings, camera: str) -> None:
    images = {"IMG_0001.jpg": _image("JPEG"), "IMG_0002.jpg": _image("PNG"), "IMG_0003": _image("WEBP")}
    for name, data in images.items():
        (folder / name).write_bytes(data)
    (folder / "notes.txt").write_text("not a picture")

    results = _watcher(folder, sink, camera, settings).scan_once()
    uploaded.extend(_keys(results))

    assert Counter(r.outcome for r in results) == {Outcome.CAPTURED: 3, Outcome.REFUSED: 1}
    events = tail.events(camera)
    assert sorted(e.event_id for e in events) == sorted(r.event.event_id for r in results if r.event)
    by_sha = {e.payload["sha256"]: e.payload for e in events}
    assert set(by_sha) == {hashlib.sha256(data).hexdigest() for data in images.values()}
    assert sorted(p["content_type"] for p in by_sha.values()) == ["image/jpeg", "image/png", "image/webp"]
    assert {(p["camera_id"], p["site_id"]) for p in by_sha.values()} == {(camera, "site-watch")}
    assert all(p["object_key"].startswith(f"{CAPTURES}/") for p in by_sha.values())
    assert storage.stat_object(settings.bucket_images, events[0].payload["object_key"]).size > 0

    assert _visible(folder) == []
    assert _visible(folder / ".done") == sorted(images)
    assert _visible(folder / ".refused") == ["notes.txt", "notes.txt.reason.txt"]
    assert (folder / ".refused" / "notes.txt.reason.txt").read_text().startswith("415 not an image")


def test_a_file_dated_beyond_the_clock_skew_is_refused_with_a_reason(
        folder: Path, sink: CaptureSink, tail: CapturedTail, settings: Settings, camera: str) -> None:
    ahead = folder / "IMG_0100.jpg"
    ahead.write_bytes(_image("JPEG"))
    future = time.time() + settings.clock_skew_s + 3600
    os.utime(ahead, (future, future))

    (result,) = _watcher(folder, sink, camera, settings).scan_once()

    assert result.outcome is Outcome.REFUSED and "in the future" in result.reason
    assert (folder / ".refused" / "IMG_0100.jpg.reason.txt").read_text().startswith("400 captured_at")
    assert tail.events(camera) == []


def test_a_file_is_taken_only_once_it_stopped_changing(
        folder: Path, sink: CaptureSink, tail: CapturedTail, uploaded: list[str], settings: Settings,
        camera: str) -> None:
    data = _image("BMP", (400, 300))
    slow = folder / "slow.bmp"
    backlog = folder / "backlog.jpg"
    backlog.write_bytes(_image("JPEG"))
    hour_ago = time.time() - 3600
    os.utime(backlog, (hour_ago, hour_ago))
    (folder / ".hidden.jpg").write_bytes(_image("JPEG"))
    (folder / "upload.jpg.part").write_bytes(b"half a picture")
    watcher = _watcher(folder, sink, camera, settings, settle_s=0.5)

    slow.write_bytes(data[: len(data) // 2])
    first = watcher.scan_once()  # the backlog is complete already; the slow file has just been written
    uploaded.extend(_keys(first))
    assert [(r.path.name, r.outcome) for r in first] == [("backlog.jpg", Outcome.CAPTURED)]
    time.sleep(0.3)
    with slow.open("ab") as handle:
        handle.write(data[len(data) // 2:])
    assert watcher.scan_once() == []
    time.sleep(0.6)
    (result,) = watcher.scan_once()
    uploaded.extend(_keys([result]))

    assert result.outcome is Outcome.CAPTURED and result.event.payload["size_bytes"] == len(data)
    assert len(tail.events(camera)) == 2
    assert _visible(folder) == ["upload.jpg.part"] and (folder / ".hidden.jpg").exists()


def test_a_broker_outage_leaves_the_files_in_place_until_the_next_poll(
        folder: Path, sink: CaptureSink, tail: CapturedTail, uploaded: list[str], settings: Settings,
        camera: str, caplog: pytest.LogCaptureFixture) -> None:
    names = ["a.jpg", "b.jpg"]
    for name in names:
        (folder / name).write_bytes(_image("JPEG"))
    dead_broker = EventPublisher(settings, **{"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 1500})
    broken = CaptureSink(minio_client(settings), settings.bucket_images, dead_broker)

    with caplog.at_level(logging.WARNING, logger="producers.watch_folder"):
        results = _watcher(folder, broken, camera, settings).scan_once()
    assert [r.outcome for r in results] == [Outcome.RETRY]  # the second file is not even tried
    assert "retried on the next poll" in caplog.text
    assert _visible(folder) == names and _visible(folder / ".done") == []
    assert tail.events(camera) == []

    recovered = _watcher(folder, sink, camera, settings).scan_once()
    uploaded.extend(_keys(recovered))
    assert [r.outcome for r in recovered] == [Outcome.CAPTURED] * 2
    assert len(tail.events(camera)) == 2 and _visible(folder / ".done") == names


def test_a_retry_after_a_lost_acknowledgement_sends_the_same_event_id(
        folder: Path, tail: CapturedTail, uploaded: list[str], settings: Settings, camera: str) -> None:
    (folder / "a.jpg").write_bytes(_image("JPEG"))
    sink = LostAcknowledgement(minio_client(settings), settings.bucket_images, EventPublisher(settings))
    watcher = _watcher(folder, sink, camera, settings)

    assert [r.outcome for r in watcher.scan_once()] == [Outcome.RETRY]
    (result,) = watcher.scan_once()
    uploaded.extend(_keys([result]))

    assert result.outcome is Outcome.CAPTURED
    # The broker has it twice; consumers drop the second copy by its event id.
    assert [e.event_id for e in tail.events(camera)] == [result.event.event_id] * 2


def test_run_polls_until_stopped_and_picks_up_files_dropped_later(
        folder: Path, sink: CaptureSink, uploaded: list[str], settings: Settings, camera: str) -> None:
    watcher = _watcher(folder, sink, camera, settings, poll_s=0.05)
    stop = threading.Event()
    handled: list[int] = []
    runner = threading.Thread(target=lambda: handled.append(watcher.run(stop)))
    runner.start()
    try:
        time.sleep(0.2)
        (folder / "late.jpg").write_bytes(_image("JPEG"))
        deadline = time.monotonic() + 10
        while not (folder / ".done" / "late.jpg").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(10)
    assert handled == [1]

    for name in ("one.jpg", "two.jpg", "three.jpg"):
        (folder / name).write_bytes(_image("JPEG"))
    assert watcher.run(max_files=2) == 2
    assert len(_visible(folder)) == 1
    assert watcher.run(max_files=1) == 1
    uploaded.extend(image_object_key(hashlib.sha256(path.read_bytes()).hexdigest(), "image/jpeg", CAPTURES)
                    for path in (folder / ".done").iterdir())


def test_symbolic_links_to_files_and_folders_are_skipped_left_in_place_and_logged_once(
        folder: Path, sink: CaptureSink, tail: CapturedTail, uploaded: list[str], settings: Settings, camera: str,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = tmp_path / "secrets.env"
    secret.write_bytes(_image("PNG"))  # readable by the watcher, and a valid image: only the link rule stops it
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "IMG_0300.jpg").write_bytes(_image("JPEG"))
    (folder / "IMG_0301.png").symlink_to(secret)
    (folder / "IMG_0302").symlink_to(outside, target_is_directory=True)
    (folder / "IMG_0303.jpg").write_bytes(_image("JPEG"))
    watcher = _watcher(folder, sink, camera, settings)

    with caplog.at_level(logging.WARNING, logger="producers.watch_folder"):
        first = watcher.scan_once()
        second = watcher.scan_once()
    uploaded.extend(_keys(first))

    assert [(r.path.name, r.outcome) for r in first] == [("IMG_0303.jpg", Outcome.CAPTURED)] and second == []
    assert [e.payload["sha256"] for e in tail.events(camera)] == [first[0].event.payload["sha256"]]
    assert _visible(folder) == ["IMG_0301.png", "IMG_0302"] and (folder / "IMG_0301.png").is_symlink()
    assert _visible(folder / ".done") == ["IMG_0303.jpg"] and _visible(folder / ".refused") == []
    skips = sorted(r.getMessage() for r in caplog.records if "symbolic link" in r.getMessage())
    assert len(skips) == 2  # one line per link, not one per poll
    assert skips[0].startswith(f"skipping IMG_0301.png: a symbolic link to {secret}")
    assert skips[1].startswith(f"skipping IMG_0302: a symbolic link to {outside}")


def test_a_file_swapped_for_a_symbolic_link_after_the_scan_is_not_followed(
        folder: Path, sink: CaptureSink, tail: CapturedTail, settings: Settings, camera: str, tmp_path: Path) -> None:
    secret = tmp_path / "secrets.env"
    secret.write_bytes(_image("PNG"))
    dropped = folder / "IMG_0310.png"
    dropped.write_bytes(_image("PNG"))
    watcher = _watcher(folder, sink, camera, settings)
    ((path, signature),) = watcher._complete_files()
    dropped.unlink()
    dropped.symlink_to(secret)

    assert watcher._handle(path, signature) is None
    assert tail.events(camera) == [] and dropped.is_symlink()
