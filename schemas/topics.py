"""Every Kafka topic of the system: name (without the deployment prefix), key, partitions, retention.

Producers own their topic; this module is the one place that names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 60 * 60 * 1000
FOREVER = "-1"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    partitions: int | None = None  # None: the image-topic partition count from settings
    config: dict[str, str] = field(default_factory=dict)

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.name}"

    def partition_count(self, image_partitions: int) -> int:
        return self.partitions if self.partitions is not None else image_partitions


def _deleted_after(days: int) -> dict[str, str]:
    return {"cleanup.policy": "delete", "retention.ms": str(days * DAY_MS)}


# Latest-state topics are compacted: a consumer reading from the start sees the current value per key.
_COMPACTED = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": str(DAY_MS)}

IMAGES_CAPTURED = TopicSpec("images.captured", key="camera_id", config=_deleted_after(7))
IMAGES_CLASSIFIED = TopicSpec("images.classified", key="camera_id", config=_deleted_after(7))
IMAGES_OOD = TopicSpec("images.ood", key="camera_id", config=_deleted_after(30))
DEAD_LETTERS = TopicSpec("dead-letters", key="original event id", partitions=3, config=_deleted_after(30))
COUNTS_TOTALS = TopicSpec("counts.totals", key="scope:name (class:glass, camera:cam-1)", partitions=3,
                          config=_COMPACTED)
COUNTS_WINDOWS = TopicSpec("counts.windows", key="scope:name@window start", partitions=3,
                           config={**_COMPACTED, "cleanup.policy": "compact,delete",
                                   "retention.ms": str(7 * DAY_MS)})
# Internal to scoring: the latest count state of each classified partition, summed into counts.*.
COUNTS_SNAPSHOTS = TopicSpec("counts.partition-snapshots", key="classified partition", partitions=1,
                             config=_COMPACTED)
LABELS = TopicSpec("labels", key="image sha256", partitions=3,
                   config={"cleanup.policy": "delete", "retention.ms": FOREVER})
VERSION_REQUESTS = TopicSpec("dataset.version-requests", key="request id", partitions=1,
                             config={"cleanup.policy": "delete", "retention.ms": FOREVER})
DATASET_VERSIONS = TopicSpec("dataset.versions", key="version name", partitions=1,
                             config={"cleanup.policy": "delete", "retention.ms": FOREVER})
TRAINING_RUNS = TopicSpec("training.runs", key="run id", partitions=3, config=_deleted_after(30))
MODELS_PROMOTED = TopicSpec("models.promoted", key="production", partitions=1, config=_COMPACTED)
# The audited accuracy of each site's and camera's counts, keyed like counts.totals so consumers join the two.
COUNTS_ACCURACY = TopicSpec("counts.accuracy", key="scope:name (site:plant-a, camera:cam-1)", partitions=1,
                            config=_COMPACTED)
# Scoring workers read each camera's latest state from the start (stream_apps/scoring/camera_drift.py).
CAMERAS_DRIFT = TopicSpec("cameras.drift", key="camera_id", partitions=1, config=_COMPACTED)
INFRA_SMOKE = TopicSpec("infra.smoke", key="round-trip token", partitions=1, config=_deleted_after(1))

ALL_TOPICS: tuple[TopicSpec, ...] = (
    IMAGES_CAPTURED,
    IMAGES_CLASSIFIED,
    IMAGES_OOD,
    DEAD_LETTERS,
    COUNTS_TOTALS,
    COUNTS_WINDOWS,
    COUNTS_SNAPSHOTS,
    LABELS,
    VERSION_REQUESTS,
    DATASET_VERSIONS,
    TRAINING_RUNS,
    MODELS_PROMOTED,
    COUNTS_ACCURACY,
    CAMERAS_DRIFT,
    INFRA_SMOKE,
)
