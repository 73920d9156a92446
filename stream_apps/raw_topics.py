"""Topics as Faust sees them in every stream app: bytes in, bytes out; the codec validates, not Faust."""

from __future__ import annotations

import faust

from infra.settings import Settings
from schemas.topics import TopicSpec


def raw_topic(app: faust.App, settings: Settings, spec: TopicSpec) -> faust.TopicT:
    return app.topic(spec.full_name(settings.topic_prefix), key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw",
                     partitions=spec.partition_count(settings.image_partitions))
