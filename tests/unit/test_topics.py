"""The topic catalogue: names, partitions and retention policies."""

from __future__ import annotations

from schemas.topics import ALL_TOPICS, COUNTS_TOTALS, IMAGES_CAPTURED, LABELS, MODELS_PROMOTED


def test_names_are_unique_and_prefixed() -> None:
    names = [spec.full_name("site-a.") for spec in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert all(name.startswith("site-a.") for name in names)


def test_image_topics_scale_with_the_setting_and_others_are_fixed() -> None:
    assert IMAGES_CAPTURED.partition_count(8) == 8
    assert MODELS_PROMOTED.partition_count(8) == 1


def test_latest_state_topics_are_compacted_and_the_label_log_is_kept_forever() -> None:
    assert COUNTS_TOTALS.config["cleanup.policy"] == "compact"
    assert MODELS_PROMOTED.config["cleanup.policy"] == "compact"
    assert LABELS.config == {"cleanup.policy": "delete", "retention.ms": "-1"}
    assert int(IMAGES_CAPTURED.config["retention.ms"]) == 7 * 24 * 3600 * 1000
