"""Simulated cameras: images at a steady rate, spread over N cameras, uploaded and announced."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from producers.capture import CapturedImage, CaptureSink
from schemas.events import Event

UPLOAD_THREADS = 4


@dataclass
class RunSummary:
    sent: int = 0
    failed: int = 0
    bytes_sent: int = 0
    elapsed_s: float = 0.0
    per_camera: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0


class CameraSimulator:
    def __init__(self, sink: CaptureSink, cameras: int, site_id: str = "site-1", camera_prefix: str = "cam") -> None:
        if cameras < 1:
            raise ValueError("at least one camera")
        self._sink = sink
        self._cameras = [f"{camera_prefix}-{i}" for i in range(1, cameras + 1)]
        self._site_id = site_id

    def run(self, source: Iterator[tuple[bytes, str]], count: int, rate: float,
            on_sent: Callable[[Event], None] | None = None) -> RunSummary:
        """Send `count` images at `rate` per second (0: as fast as possible); returns what happened."""
        summary = RunSummary()
        started = time.monotonic()
        pending: list[tuple[Future[Event], str, int]] = []
        with ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="upload") as uploads:
            for index in range(count):
                if rate > 0:
                    time.sleep(max(0.0, started + index / rate - time.monotonic()))
                data, content_type = next(source)
                camera = self._cameras[index % len(self._cameras)]
                image = CapturedImage(data, content_type, camera, self._site_id)
                pending.append((uploads.submit(self._sink.store, image), camera, len(data)))
                # Publish in capture order as uploads complete, keeping a few in flight.
                while pending and (pending[0][0].done() or len(pending) > 2 * UPLOAD_THREADS):
                    self._publish(pending.pop(0), summary, on_sent)
            while pending:
                self._publish(pending.pop(0), summary, on_sent)
        try:
            self._sink.flush()
        except Exception as error:  # which events were lost is unknown: report none as sent
            summary.errors.append(str(error))
            summary.failed, summary.sent = summary.failed + summary.sent, 0
        summary.elapsed_s = time.monotonic() - started
        return summary

    def _publish(self, item: tuple[Future[Event], str, int], summary: RunSummary,
                 on_sent: Callable[[Event], None] | None) -> None:
        future, camera, size = item
        try:
            event = future.result()
            self._sink.publish(event)
        except Exception as error:
            summary.failed += 1
            summary.errors.append(f"{camera}: {error}")
            return
        summary.sent += 1
        summary.bytes_sent += size
        summary.per_camera[camera] += 1
        if on_sent is not None:
            on_sent(event)
