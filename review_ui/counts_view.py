"""Live counts for the counts page: the latest record per key of counts.totals and counts.windows.

Both topics are compacted and carry absolute counts, so reading them from the start and keeping the
latest value per key is the whole algorithm; re-reading is harmless.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from infra.clients import kafka_consumer
from infra.settings import Settings
from schemas.codec import InvalidEvent, decode_event
from schemas.events import format_timestamp, parse_timestamp
from schemas.topics import COUNTS_TOTALS, COUNTS_WINDOWS

log = logging.getLogger(__name__)
HISTORY_MINUTES = 60
KEEP_WINDOWS = timedelta(hours=2)  # older windows are never shown; dropping them bounds the memory
RESTART_DELAY_S = 5.0


@dataclass(frozen=True)
class WindowKey:
    scope: str
    name: str
    start: datetime


def minute_series(windows: dict[WindowKey, int], scope: str, now: datetime,
                  minutes: int = HISTORY_MINUTES) -> dict[str, Any]:
    """Per-minute counts of the last `minutes` minutes for every key of a scope; missing minutes are 0."""
    end = now.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    starts = [end - timedelta(minutes=minutes - i) for i in range(minutes)]
    index = {start: i for i, start in enumerate(starts)}
    series: dict[str, list[int]] = {}
    for key, count in windows.items():
        position = index.get(key.start.astimezone(UTC))
        if key.scope == scope and position is not None:
            series.setdefault(key.name, [0] * minutes)[position] = count
    return {"minutes": [format_timestamp(start) for start in starts], "series": dict(sorted(series.items()))}


class CountsView:
    """A background reader of the count topics; `totals()` and `history()` are safe from any thread."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._totals: dict[str, dict[str, int]] = {"class": {}, "camera": {}}
        self._windows: dict[WindowKey, int] = {}
        self._as_of: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def apply(self, raw: bytes) -> None:
        try:
            payload = decode_event(raw).payload
        except InvalidEvent as error:
            log.warning("skipping a count record that is not a valid event: %s", error)
            return
        with self._lock:
            self._as_of = max(self._as_of or payload["as_of"], payload["as_of"])
            window = payload["window"]
            if window is None:
                self._totals.setdefault(payload["scope"], {})[payload["key"]] = payload["count"]
                return
            start = parse_timestamp(window["start"])
            if start >= datetime.now(UTC) - KEEP_WINDOWS:
                self._windows[WindowKey(payload["scope"], payload["key"], start)] = payload["count"]

    def totals(self) -> dict[str, Any]:
        with self._lock:
            return {"class": dict(sorted(self._totals["class"].items())),
                    "camera": dict(sorted(self._totals["camera"].items())), "as_of": self._as_of,
                    "error": self.error}

    def history(self, scope: str = "class", minutes: int = HISTORY_MINUTES) -> dict[str, Any]:
        now = datetime.now(UTC)
        with self._lock:
            cutoff = now - KEEP_WINDOWS
            for key in [key for key in self._windows if key.start < cutoff]:
                del self._windows[key]
            windows = dict(self._windows)
        return {"scope": scope, **minute_series(windows, scope, now, minutes)}

    def _consumer(self) -> Consumer:
        consumer = kafka_consumer(self._settings, group_id=f"review-ui-counts-{uuid.uuid4().hex}")
        partitions = []
        for spec in (COUNTS_TOTALS, COUNTS_WINDOWS):
            topic = spec.full_name(self._settings.topic_prefix)
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            if metadata.error is not None:
                raise RuntimeError(f"topic {topic}: {metadata.error.str()}")
            partitions += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        consumer.assign(partitions)
        return consumer

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                consumer = self._consumer()
            except Exception as error:
                self.error = f"count topics unreachable: {error}"
                self._stop.wait(RESTART_DELAY_S)
                continue
            try:
                while not self._stop.is_set():
                    for message in consumer.consume(500, 0.5):
                        if message.error():
                            self.error = message.error().str()
                        else:
                            self.error = None
                            self.apply(message.value())
            except Exception as error:
                self.error = f"{type(error).__name__}: {error}"
                log.exception("count reader failed; restarting in %.0f s", RESTART_DELAY_S)
                self._stop.wait(RESTART_DELAY_S)
            finally:
                consumer.close()

    def start(self) -> CountsView:
        self._thread = threading.Thread(target=self.run, name="counts-view", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
