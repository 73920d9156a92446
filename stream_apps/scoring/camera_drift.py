"""Which cameras the scoring monitor marks drifting, as every scoring worker sees it.

Each worker reads cameras.drift itself, outside any consumer group (a group would give the one partition to one
worker), from the beginning, and keeps each camera's latest state: the monitor publishes a camera's state only
when it changes, so the whole topic is the current picture. Images of a drifting camera are judged with the
model's stricter pair of thresholds (batch.py): a camera whose look the model does not know is where it is
confidently wrong, and where a site cannot see it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka_security import aiokafka_kwargs
from infra.retry import Backoff, Degradation, retry_transient_async
from infra.settings import Settings
from schemas.events import Event, EventType
from schemas.topics import CAMERAS_DRIFT
from stream_apps.scoring.feed_events import events_of_type

log = logging.getLogger(__name__)


class DriftingCameras:
    """The ids of the cameras whose latest CameraDriftDetected says `drifting`; `camera_id in cameras` is safe
    from any thread (a set's membership test and update are each atomic under the GIL)."""

    def __init__(self) -> None:
        self._drifting: set[str] = set()

    def __contains__(self, camera_id: object) -> bool:
        return camera_id in self._drifting

    def ids(self) -> list[str]:
        return sorted(self._drifting)

    def apply(self, event: Event) -> None:
        camera, state = event.payload["camera_id"], event.payload["state"]
        if state == "drifting" and camera not in self._drifting:
            log.info("camera %s is drifting: its images are judged with the stricter thresholds", camera)
            self._drifting.add(camera)
        elif state == "recovered" and camera in self._drifting:
            log.info("camera %s recovered: its images are judged with the regular thresholds", camera)
            self._drifting.discard(camera)


class CameraDriftFeed:
    """CameraDriftDetected events of cameras.drift, from its first retained record on."""

    def __init__(self, settings: Settings, degradation: Degradation) -> None:
        self._partition = TopicPartition(CAMERAS_DRIFT.full_name(settings.topic_prefix), 0)
        self._settings, self._degradation = settings, degradation
        self._consumer: AIOKafkaConsumer | None = None

    async def _started(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(**aiokafka_kwargs(self._settings), group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="earliest")
        try:
            await consumer.start()
        except Exception:
            await consumer.stop()
            raise
        consumer.assign([self._partition])
        await consumer.seek_to_beginning(self._partition)
        return consumer

    async def start(self) -> None:
        """Connect, waiting with backoff while Kafka is unreachable (scoring goes on with the regular pair)."""
        self._consumer = await retry_transient_async(self._started, what="camera drift feed (Kafka)",
                                                     degradation=self._degradation,
                                                     backoff=Backoff(cap_s=self._settings.retry_max_delay_s))

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    def events(self) -> AsyncIterator[Event]:
        return events_of_type(self._consumer, "cameras.drift", EventType.CAMERA_DRIFT_DETECTED)
