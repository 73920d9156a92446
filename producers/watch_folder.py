"""A folder that a camera drops pictures into: each file, once complete, is checked, captured and moved away.

    <folder>/.done/       captured files
    <folder>/.refused/    refused files, each with a <name>.reason.txt

A file is complete when its size and modification time have not changed for `settle_s` seconds. Hidden
files and *.part / *.tmp are left alone: writers that write under a temporary name and rename are safe
even when they stall for longer than `settle_s`. Symbolic links (to files or folders) are skipped and left
in place, each logged once: whoever can drop a link could otherwise make the watcher publish any file it can
read. One watcher per folder. A file's modification time is its
capture time: one more than `clock_skew_s` in the future is refused, as at the HTTP ingest.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import click

from infra.settings import load_settings
from producers.capture import CapturedImage, CaptureSink
from producers.upload_checks import (
    SERVICE_ERRORS,
    UploadRefused,
    check_captured_at,
    check_identifier,
    check_upload,
    open_sink,
)
from schemas.events import Event

log = logging.getLogger(__name__)

SETTLE_S = 2.0
PARTIAL_SUFFIXES = frozenset({".part", ".tmp"})

Signature = tuple[int, int]  # size in bytes, modification time in ns


class Outcome(StrEnum):
    CAPTURED = "captured"
    REFUSED = "refused"
    RETRY = "retry"  # Kafka or MinIO failed: the file stays where it is for the next poll


@dataclass(frozen=True)
class WatchResult:
    path: Path  # where the file was found
    outcome: Outcome
    moved_to: Path | None = None
    event: Event | None = None
    reason: str = ""


class FolderWatcher:
    def __init__(self, folder: Path, sink: CaptureSink, camera_id: str, site_id: str, poll_s: float = 1.0,
                 settle_s: float = SETTLE_S, *, max_bytes: int, max_pixels: int, clock_skew_s: float) -> None:
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder")
        self.folder = folder
        self.done = folder / ".done"
        self.refused = folder / ".refused"
        self.done.mkdir(exist_ok=True)
        self.refused.mkdir(exist_ok=True)
        self._sink = sink
        self._camera_id = check_identifier("camera_id", camera_id)
        self._site_id = check_identifier("site_id", site_id)
        self._poll_s = poll_s
        self._settle_s = settle_s
        self._max_bytes = max_bytes
        self._max_pixels = max_pixels
        self._clock_skew_s = clock_skew_s
        self._stable_since: dict[Path, tuple[Signature, float]] = {}
        self._skipped_links: set[Path] = set()  # logged already; forgotten once the link is gone
        # Stored but not acknowledged: a retry sends the same event id, so consumers can drop a duplicate
        # if the broker did keep the first attempt.
        self._unacknowledged: dict[Path, tuple[Signature, Event]] = {}

    def run(self, stop_event: threading.Event | None = None, max_files: int | None = None) -> int:
        """Poll until stopped (or max_files were captured or refused); returns how many were."""
        stop = stop_event or threading.Event()
        handled = 0
        while not stop.is_set():
            limit = None if max_files is None else max_files - handled
            handled += sum(result.outcome is not Outcome.RETRY for result in self.scan_once(limit))
            if max_files is not None and handled >= max_files:
                break
            stop.wait(self._poll_s)
        return handled

    def scan_once(self, limit: int | None = None) -> list[WatchResult]:
        """Handle every complete file, oldest first; stops at the first store failure."""
        results: list[WatchResult] = []
        for path, signature in self._complete_files():
            if limit is not None and len(results) >= limit:
                break
            result = self._handle(path, signature)
            if result is None:
                continue
            results.append(result)
            if result.outcome is Outcome.RETRY:  # the stores are down: the other files wait too
                break
        return results

    def _complete_files(self) -> list[tuple[Path, Signature]]:
        now, wall_now = time.monotonic(), time.time()
        seen: dict[Path, tuple[Signature, float]] = {}
        complete: list[tuple[int, str, Path, Signature]] = []
        links: set[Path] = set()
        with os.scandir(self.folder) as entries:
            for entry in entries:
                path = Path(entry.path)
                if entry.name.startswith(".") or path.suffix.lower() in PARTIAL_SUFFIXES:
                    continue
                if entry.is_symlink():
                    links.add(path)
                    if path not in self._skipped_links:
                        log.warning("skipping %s: a symbolic link to %s; only regular files placed in %s are "
                                    "captured (copy or move the file in instead)", entry.name,
                                    _link_target(path), self.folder)
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                signature = (stat.st_size, stat.st_mtime_ns)
                previous = self._stable_since.get(path)
                if previous is not None and previous[0] == signature:
                    since = previous[1]
                else:
                    # First sight of this content: a file untouched for settle_s is complete already (a
                    # backlog at start-up is not delayed). Clamped, as a file server's clock may run ahead.
                    since = now - max(0.0, wall_now - stat.st_mtime)
                seen[path] = (signature, since)
                if now - since >= self._settle_s:
                    complete.append((stat.st_mtime_ns, entry.name, path, signature))
        self._stable_since = seen
        self._skipped_links = links
        return [(path, signature) for _, _, path, signature in sorted(complete)]

    def _handle(self, path: Path, signature: Signature) -> WatchResult | None:
        try:
            # O_NOFOLLOW: a file swapped for a link since the scan is not followed either (the next scan logs it).
            with open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NOFOLLOW)) as handle:
                data = handle.read(self._max_bytes + 1)  # enough to know it is too large
        except FileNotFoundError:  # taken away by someone else meanwhile
            return None
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            return None
        try:
            content_type = check_upload(data, self._max_bytes, self._max_pixels)
            check_captured_at(_captured_at(signature), self._clock_skew_s)
        except UploadRefused as refusal:
            moved = _move(path, self.refused)
            moved.with_name(moved.name + ".reason.txt").write_text(f"{refusal.status} {refusal.message}\n")
            log.warning("refused %s: %s", path.name, refusal.message)
            return WatchResult(path, Outcome.REFUSED, moved, reason=refusal.message)
        try:
            event = self._capture(path, signature, data, content_type)
        except SERVICE_ERRORS as error:
            log.warning("could not capture %s, it stays in %s and is retried on the next poll: %s",
                        path.name, self.folder, error)
            return WatchResult(path, Outcome.RETRY, reason=str(error))
        moved = _move(path, self.done)
        log.info("captured %s as %s (%s)", path.name, event.event_id, event.payload["object_key"])
        return WatchResult(path, Outcome.CAPTURED, moved, event)

    def _capture(self, path: Path, signature: Signature, data: bytes, content_type: str) -> Event:
        pending = self._unacknowledged.get(path)
        if pending is not None and pending[0] == signature:
            event = pending[1]
        else:
            event = self._sink.store(CapturedImage(data, content_type, self._camera_id, self._site_id,
                                                   _captured_at(signature)))
            self._unacknowledged[path] = (signature, event)
        self._sink.publish(event)
        self._sink.flush()
        del self._unacknowledged[path]
        return event


def _link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:  # removed meanwhile
        return "?"


def _captured_at(signature: Signature) -> datetime:
    return datetime.fromtimestamp(signature[1] / 1e9, UTC)


def _move(path: Path, folder: Path) -> Path:
    """Move into folder without overwriting: cameras reuse names when their counter wraps."""
    target = folder / path.name
    copy = 1
    while target.exists() or target.with_name(target.name + ".reason.txt").exists():
        target = folder / f"{path.stem}-{copy}{path.suffix}"
        copy += 1
    return path.rename(target)


@click.command("watch")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--camera", "camera_id", required=True, help="Camera id put on every event.")
@click.option("--site", "site_id", default="site-1", show_default=True)
@click.option("--poll", "poll_s", default=1.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between two looks at the folder.")
@click.option("--settle", "settle_s", default=SETTLE_S, show_default=True, type=click.FloatRange(min=0),
              help="Seconds a file must stay unchanged before it is taken.")
def watch(folder: Path, camera_id: str, site_id: str, poll_s: float, settle_s: float) -> None:
    """Capture the images a camera drops into FOLDER; they move to FOLDER/.done or FOLDER/.refused."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    try:
        watcher = FolderWatcher(folder, open_sink(settings), camera_id, site_id, poll_s, settle_s,
                                max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
                                clock_skew_s=settings.clock_skew_s)
    except UploadRefused as error:
        raise click.BadParameter(error.message) from None
    stop = threading.Event()
    # Finish the file in hand, then stop: nothing is half-captured on Ctrl-C or a service stop.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: stop.set())
    click.echo(f"watching {folder} as camera {camera_id} at {site_id} (Ctrl-C to stop)")
    handled = watcher.run(stop)
    click.echo(f"stopped after {handled} files")
