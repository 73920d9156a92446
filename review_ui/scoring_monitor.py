"""The scoring monitor: every outcome of scoring counted exactly, and each camera checked for drift.

It reads images.classified and images.ood in its own consumer group (a background thread of the UI process):
- `scoring_tallies` (UTC day of captured_at, site, camera, model version -> classified, ood) are incremented in
  the PostgreSQL transaction that also stores the next offset of each partition read (`monitor_offsets`); on
  assignment the consumer seeks to those offsets, so a redelivered record is never counted twice. An outcome
  sent twice by scoring (same event id, see stream_apps/scoring/outcome_delivery.py) within the drift window is
  counted once too. The broker's committed offsets are not used.
- per camera, the images of the last WASTEX_DRIFT_WINDOW_S seconds are kept in memory (review_ui/camera_windows.py)
  and checked every WASTEX_DRIFT_CHECK_S seconds with the test stated in review_ui/drift.py; `camera_drift` holds
  each camera's latest check, and every change of state (drifting / recovered) is published once as
  CameraDriftDetected on cameras.drift (the scoring workers judge a drifting camera's images with the stricter
  thresholds; its OOD rate here stays the regular pair's, see `observation`). On assignment the windows are
  rebuilt by reading back the records of the last window (by record timestamp) up to the stored offsets: a
  restart keeps its drift history.
Both topics are keyed by camera with as many partitions, and the range assignor gives a UI process the same
partition numbers of both: each camera's outcomes meet in one process.
A passing failure (PostgreSQL or Kafka down) is waited out with capped backoff; a record that is not a valid
outcome, or that the database refuses, is dead-lettered with the reason, on its own, and counted as read.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from sqlalchemy.orm import sessionmaker

from infra.clients import kafka_consumer
from infra.retry import Degradation
from infra.settings import Settings
from review_ui import drift, monitor_store
from review_ui.background_loop import ConsumerLoop
from review_ui.camera_windows import CameraWindow, CameraWindows, Observation
from review_ui.monitor_store import Position, StaleOffsets, TallyKey
from schemas.codec import InvalidEvent, decode_event, new_event
from schemas.events import DeadLetterReason, Event, EventType, format_timestamp, parse_timestamp
from schemas.topics import IMAGES_CLASSIFIED, IMAGES_OOD

log = logging.getLogger(__name__)
SERVICE = "review_ui.scoring_monitor"
BATCH = 500
REBUILD_TIMEOUT_S = 120.0
_DEAD_LETTER_IDS = uuid.UUID("3f6d2a91-8b7e-4c35-a0d4-6e1f9b2c7d58")
_DRIFT_IDS = uuid.UUID("c41e7b09-5d2a-4f86-93be-2a8d6f0e1c74")
T = TypeVar("T")
COUNTING = "scoring tallies (PostgreSQL)"
CHECKING = "camera drift (PostgreSQL)"


def group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}review-ui-scoring-monitor"


def tally_key(payload: Mapping[str, Any]) -> TallyKey:
    day = parse_timestamp(payload["captured_at"]).astimezone(UTC).date()
    return TallyKey(day, payload["site_id"], payload["camera_id"], payload["model_version"])


def observation(payload: Mapping[str, Any], flagged: bool) -> Observation:
    """The image as the drift check sees it. A drifting camera's images are judged with the stricter pair of
    thresholds; the check counts what the regular pair flags, or being watched would keep a camera drifting."""
    regular_ood = flagged and not (payload.get("camera_drifting") and payload.get("regular_reason") is None)
    return Observation(parse_timestamp(payload["captured_at"]).timestamp(), float(payload["energy"]), regular_ood,
                       payload["model_version"])


class ScoringMonitor(ConsumerLoop):
    """Tallies and drift checks of one UI process; see the module docstring. Runs in one thread: `run`."""

    thread_name = what = "scoring-monitor"
    dead_letter_ids = _DEAD_LETTER_IDS
    service = SERVICE

    def __init__(self, settings: Settings, sessions: sessionmaker, degradation: Degradation | None = None) -> None:
        super().__init__(settings, sessions, degradation)
        self._limits = drift.DriftLimits.from_settings(settings)
        self._windows = CameraWindows(settings.drift_window_s)
        self._topics = {IMAGES_CLASSIFIED.full_name(settings.topic_prefix): False,
                        IMAGES_OOD.full_name(settings.topic_prefix): True}  # topic -> its outcomes are OOD
        self._expected: dict[Position, int | None] = {}  # where this consumer found each assigned partition
        self._last_check = time.monotonic()  # the first check after one interval: the windows fill first

    def _in_transaction(self, work: Callable[..., T], *args: Any) -> T:
        with self._sessions() as session, session.begin():
            return work(session, *args)

    # --- assignment: seek to the stored offsets, rebuild the windows -------------------------------------------

    def consumer(self) -> Consumer:
        """A consumer in the monitor's group that seeks to the stored offsets and rebuilds the windows whenever
        partitions are assigned to it (for `poll_once`)."""
        consumer = kafka_consumer(self._settings, group_id(self._settings),
                                  **{"partition.assignment.strategy": "range"})
        consumer.subscribe(list(self._topics), on_assign=self._assigned, on_revoke=self._revoked)
        return consumer

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored = self._retrying(lambda: self._in_transaction(monitor_store.stored_offsets, self._topics),
                                COUNTING)
        self._expected = {(p.topic, p.partition): stored.get((p.topic, p.partition)) for p in partitions}
        consumer.assign([TopicPartition(p.topic, p.partition, stored.get((p.topic, p.partition), OFFSET_BEGINNING))
                         for p in partitions])
        read = self._retrying(self._rebuild, "rebuilding drift windows (Kafka)")
        log.info("scoring monitor assigned %d partitions; %d outcomes of the last %.0f s read back", len(partitions),
                 read, self._settings.drift_window_s)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._expected = {}
        self._windows.clear()
        consumer.unassign()

    def _rebuild(self) -> int:
        """Read the outcomes of the last window that were counted already (up to the stored offsets) back into
        the windows; how many."""
        self._windows.clear()  # also what an interrupted try read
        counted = {position: end for position, end in self._expected.items() if end}
        if not counted:
            return 0
        since_ms = int((time.time() - self._settings.drift_window_s) * 1000)
        reader = kafka_consumer(self._settings, f"{group_id(self._settings)}-rebuild-{uuid.uuid4().hex}")
        try:
            starts = reader.offsets_for_times([TopicPartition(topic, partition, since_ms)
                                               for topic, partition in counted], timeout=10)
            ends = {(p.topic, p.partition): counted[(p.topic, p.partition)] for p in starts
                    if 0 <= p.offset < counted[(p.topic, p.partition)]}
            reader.assign([p for p in starts if (p.topic, p.partition) in ends])
            read, deadline = 0, time.monotonic() + REBUILD_TIMEOUT_S
            while ends and time.monotonic() < deadline:
                for message in reader.consume(BATCH, 0.5):
                    position = (message.topic(), message.partition())
                    if message.error() or position not in ends or message.offset() >= ends[position]:
                        continue
                    if message.offset() >= ends[position] - 1:
                        del ends[position]
                    read += self._read_back(message)
            if ends:
                log.warning("drift windows of %s not read back within %.0f s", sorted(ends), REBUILD_TIMEOUT_S)
            return read
        finally:
            reader.close()

    def _read_back(self, message: Message) -> int:
        """One counted record into the windows (no validation: a bad record was dead-lettered when counted)."""
        try:
            document = json.loads(message.value())
            payload = document["payload"]
            stamp_ms = message.timestamp()[1]
            self._windows.add(document["event_id"], payload["camera_id"], payload["site_id"],
                              observation(payload, self._topics[message.topic()]),
                              stamp_ms / 1000 if stamp_ms > 0 else time.time())
        except (ValueError, KeyError, TypeError):
            return 0
        return 1

    # --- counting ------------------------------------------------------------------------------------------------

    def _decode(self, message: Message) -> Event:
        event = decode_event(message.value())
        expected = EventType.IMAGE_FLAGGED_OOD if self._topics[message.topic()] else EventType.IMAGE_CLASSIFIED
        if event.event_type is not expected:
            raise InvalidEvent(f"{event.event_type} does not belong on {message.topic()}", path="event_type")
        tally_key(event.payload)  # a capture time the tally cannot place is the record's fault
        return event

    def _count(self, messages: list[tuple[Message, Event | None]]) -> None:
        """Tally these records (None: a record already dead-lettered) and move their partitions on, in one
        transaction; then remember them in the windows. Raises StaleOffsets if another consumer moved on."""
        next_offsets: dict[Position, int] = {}
        increments: Counter[tuple[TallyKey, bool]] = Counter()
        fresh: list[tuple[Message, Event]] = []
        ids: set[str] = set()
        for message, event in messages:
            position = (message.topic(), message.partition())
            next_offsets[position] = max(next_offsets.get(position, 0), message.offset() + 1)
            if event is None or self._windows.seen(event.event_id) or event.event_id in ids:
                continue
            ids.add(event.event_id)
            increments[(tally_key(event.payload), self._topics[message.topic()])] += 1
            fresh.append((message, event))
        tallies = {key: (increments[(key, False)], increments[(key, True)]) for key, _ in increments}
        self._retrying(lambda: self._in_transaction(monitor_store.record_batch, self._expected, next_offsets,
                                                    tallies), COUNTING)
        self._expected.update(next_offsets)
        read_at = time.time()
        for message, event in fresh:
            payload = event.payload
            self._windows.add(event.event_id, payload["camera_id"], payload["site_id"],
                              observation(payload, self._topics[message.topic()]), read_at)

    def _count_each(self, messages: list[tuple[Message, Event | None]]) -> None:
        """The records one by one, after the database refused their batch: only the refused ones are
        dead-lettered (and then counted as read)."""
        for message, event in messages:
            try:
                self._count([(message, event)])
            except (InterruptedError, StaleOffsets):
                raise
            except Exception as error:  # not a passing failure: the database will refuse this record every time
                self._publish([self._letter(message, error, DeadLetterReason.PROCESSING_ERROR)],
                              "scoring monitor dead letters (Kafka)")
                self._count([(message, None)])

    def poll_once(self, consumer: Consumer, timeout_s: float = 1.0) -> int:
        """One batch counted (and a drift check when one is due); returns how many records were read."""
        messages = [m for m in consumer.consume(BATCH, timeout_s) if not m.error()]
        decoded: list[tuple[Message, Event | None]] = []
        letters = []
        for message in messages:
            try:
                decoded.append((message, self._decode(message)))
            except (InvalidEvent, ValueError) as error:
                letters.append(self._letter(message, error))
                decoded.append((message, None))
        self._publish(letters, "scoring monitor dead letters (Kafka)")
        if decoded:
            try:
                self._count(decoded)
            except (InterruptedError, StaleOffsets):
                raise
            except Exception as error:
                log.warning("the database refused a batch of %d outcomes (%s); counting them one by one",
                            len(decoded), error)
                self._count_each(decoded)
        if time.monotonic() - self._last_check >= self._settings.drift_check_s:
            try:
                self.check()
            except InterruptedError:
                raise
            except Exception:  # a failed check must not stop the counting; the next one tries again
                log.exception("drift check failed; the next in %.0f s", self._settings.drift_check_s)
        return len(messages)

    # --- drift ---------------------------------------------------------------------------------------------------

    def _reference(self, window: CameraWindow, references: dict[str, monitor_store.Reference]
                   ) -> tuple[list[float] | None, float]:
        """(energy percentiles or None, expected OOD rate) of the window's model version."""
        reference = references.get(window.model_version, monitor_store.Reference(None, None))
        quantiles = reference.energy_quantiles
        if quantiles is not None:
            try:
                drift.reference_cdf(quantiles)
            except (ValueError, TypeError) as error:
                log.warning("model %s has an unusable energy reference (%s): OOD rate only", window.model_version,
                            error)
                quantiles = None
        expected = reference.review_rate if reference.review_rate is not None else self._settings.review_rate
        return quantiles, expected

    def _drift_event(self, window: CameraWindow, statistics: drift.WindowStatistics, drifting: bool,
                     now: datetime) -> Event:
        state = "drifting" if drifting else "recovered"
        start = now - timedelta(seconds=self._settings.drift_window_s)
        payload = {
            "camera_id": window.camera_id, "site_id": window.site_id, "state": state,
            "model_version": window.model_version,
            "window": {"start": format_timestamp(start), "end": format_timestamp(now)},
            "images": statistics.images, "ood_rate": statistics.ood_rate,
            "expected_ood_rate": statistics.expected_ood_rate, "energy_ks": statistics.energy_ks,
            "median_energy_shift": statistics.median_energy_shift,
            "limits": {"ood_rate": statistics.ood_rate_limit, "energy_ks": statistics.energy_ks_limit,
                       "min_images": self._limits.min_images, "window_s": self._settings.drift_window_s},
            "reasons": drift.reasons(statistics) if drifting else [],
        }
        event_id = uuid.uuid5(_DRIFT_IDS, f"{window.camera_id}:{state}:{payload['window']['end']}")
        return new_event(EventType.CAMERA_DRIFT_DETECTED, payload, SERVICE, event_id=str(event_id))

    def check(self, now: datetime | None = None) -> list[Event]:
        """Check every camera with images in its window; returns the CameraDriftDetected events published."""
        self._last_check = time.monotonic()
        now = now or datetime.now(UTC)
        self._windows.prune(now.timestamp())
        windows = self._windows.windows()
        if not windows:
            return []

        def load(session):
            return (monitor_store.references(session, [w.model_version for w in windows]),
                    monitor_store.drift_states(session, [w.camera_id for w in windows]))

        references, states = self._retrying(lambda: self._in_transaction(load), CHECKING)
        rows, events = [], []
        for window in windows:
            quantiles, expected = self._reference(window, references)
            statistics = drift.window_statistics(window.energies, window.ood, quantiles, expected, self._limits)
            before = states.get(window.camera_id)
            was = before is not None and before.drifting
            drifting = drift.next_state(was, statistics, self._limits)
            if drifting != was:
                events.append(self._drift_event(window, statistics, drifting, now))
            rows.append({
                "camera_id": window.camera_id, "site_id": window.site_id, "model_version": window.model_version,
                "drifting": drifting, "images": statistics.images, "ood_rate": statistics.ood_rate,
                "energy_ks": statistics.energy_ks, "median_energy_shift": statistics.median_energy_shift,
                "checked_at": now,
                "drifting_since": (before.drifting_since if was else now) if drifting else None})
        # Published before the state is stored: a crash in between sends the change again, never loses it.
        self._publish(events, "camera drift events (Kafka)")
        self._retrying(lambda: self._in_transaction(monitor_store.save_drift, rows), CHECKING)
        for event in events:
            log.info("camera %s %s: %s", event.payload["camera_id"], event.payload["state"],
                     ", ".join(event.payload["reasons"]) or "every statistic within its limit")
        return events

    def _restarts_at_once(self, error: Exception) -> bool:
        return isinstance(error, StaleOffsets)  # another process moved the stored offsets: read on from them
