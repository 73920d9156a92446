"""The topics the scoring app writes, each event to the topic and key its contract routes it to."""

from __future__ import annotations

import asyncio

import faust

from infra.settings import Settings
from schemas.codec import encode
from schemas.events import Event, route
from schemas.topics import COUNTS_TOTALS, COUNTS_WINDOWS, DEAD_LETTERS, IMAGES_CLASSIFIED, IMAGES_OOD
from stream_apps.raw_topics import raw_topic


class OutcomeTopics:
    def __init__(self, app: faust.App, settings: Settings) -> None:
        self._topics = {spec.name: raw_topic(app, settings, spec)
                        for spec in (IMAGES_CLASSIFIED, IMAGES_OOD, DEAD_LETTERS, COUNTS_TOTALS, COUNTS_WINDOWS)}

    async def send(self, event: Event) -> asyncio.Future:
        """Queue the event; the returned future resolves when the broker acknowledged it."""
        target = route(event)
        return await self._topics[target.topic.name].send(key=target.key.encode(), value=encode(event))
