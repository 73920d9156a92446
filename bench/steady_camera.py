"""A camera that keeps its pictures through an outage: images stored a little ahead, announced at a steady rate.

Like a site camera with local storage, it uploads its pictures ahead of their events (so a MinIO outage meets
events whose images the workers must still fetch), waits out a store or broker that is down (capped backoff)
and catches up afterwards. Each event is tagged with the phase (the fault) during which it was announced.
"""

from __future__ import annotations

import queue
import threading
import time

from infra.clients import minio_client
from infra.publisher import EventPublisher
from infra.retry import Backoff, retry_transient
from infra.settings import Settings
from producers.capture import CapturedImage, CaptureSink
from schemas.events import Event

CAMERAS = 6


class SteadyCamera:
    def __init__(self, isolated: Settings, photos: list[bytes], rate: float, ahead_s: float = 20.0) -> None:
        self._photos = photos
        self._rate = rate
        self._publisher = EventPublisher(isolated)
        self._sink = CaptureSink(minio_client(isolated), isolated.bucket_images, self._publisher)
        self._backoff_cap = isolated.retry_max_delay_s
        self._stored: queue.Queue[Event] = queue.Queue(maxsize=max(1, int(rate * ahead_s)))
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._upload, name="camera-upload", daemon=True),
                         threading.Thread(target=self._announce, name="camera-announce", daemon=True)]
        self.phase = "start"
        self.sent: dict[str, str] = {}  # event id -> phase

    def start(self) -> SteadyCamera:
        for thread in self._threads:
            thread.start()
        return self

    def _upload(self) -> None:
        index = 0
        while not self._stop.is_set():
            image = CapturedImage(self._photos[index % len(self._photos)], "image/jpeg",
                                  f"fault-cam-{index % CAMERAS}", "bench")
            try:
                event = retry_transient(lambda image=image: self._sink.store(image), what="camera upload (MinIO)",
                                        stop=self._stop, backoff=Backoff(cap_s=self._backoff_cap))
            except InterruptedError:
                return
            while not self._stop.is_set():
                try:
                    self._stored.put(event, timeout=0.5)
                    break
                except queue.Full:
                    continue
            index += 1

    def _announce(self) -> None:
        started = time.monotonic()
        index = 0
        while not self._stop.wait(max(0.0, started + index / self._rate - time.monotonic())):
            try:
                event = self._stored.get(timeout=0.5)
            except queue.Empty:
                continue  # nothing stored yet (MinIO down for longer than the head start): catch up later
            self.sent[event.event_id] = self.phase
            # The producer holds the event through a broker outage (delivery timeout 5 min).
            self._publisher.publish(event)
            index += 1

    def stop(self) -> None:
        """Stop taking pictures and wait until the broker has every one (raises PublishError otherwise)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._publisher.flush(300)
