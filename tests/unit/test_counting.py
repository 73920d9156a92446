"""Counting stays exact when classified events are redelivered, and totals sum partition snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stream_apps.scoring.counting import RECENT_SPAN, WINDOWS_KEPT, apply_classified, empty_state, totals, window_end

T0 = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)


def test_replayed_events_are_not_counted_twice() -> None:
    state = empty_state()
    stream = [(0, offset, "glass" if offset % 2 else "metal", "cam-1", T0) for offset in range(10)]
    assert all(apply_classified(state, *event) for event in stream)
    # A restarted scorer re-emits from its last committed offset (here 6): nothing changes.
    assert not any(apply_classified(state, *event) for event in stream[6:])
    assert state["classes"] == {"glass": 5, "metal": 5}
    assert state["cameras"] == {"cam-1": 10}
    assert state["updates"] == 10
    # Source partitions are tracked apart: offset 3 of partition 1 is new.
    assert apply_classified(state, 1, 3, "paper", "cam-2", T0)


def test_events_fall_into_one_minute_windows_and_old_windows_are_dropped() -> None:
    state = empty_state()
    apply_classified(state, 0, 0, "glass", "cam-1", T0)
    apply_classified(state, 0, 1, "glass", "cam-1", T0 + timedelta(seconds=20))
    apply_classified(state, 0, 2, "glass", "cam-1", T0 + timedelta(seconds=40))
    assert state["windows"] == {
        "2026-11-23T12:00:00Z": {"classes": {"glass": 2}, "cameras": {"cam-1": 2}},
        "2026-11-23T12:01:00Z": {"classes": {"glass": 1}, "cameras": {"cam-1": 1}},
    }
    assert window_end("2026-11-23T12:00:00Z") == "2026-11-23T12:01:00Z"
    for minute in range(WINDOWS_KEPT + 5):
        apply_classified(state, 0, 10 + minute, "glass", "cam-1", T0 + timedelta(minutes=minute))
    assert len(state["windows"]) == WINDOWS_KEPT
    assert min(state["windows"]) == "2026-11-23T12:05:00Z"
    assert state["classes"]["glass"] == 3 + WINDOWS_KEPT + 5


def test_totals_sum_partitions_and_resumming_changes_nothing() -> None:
    first, second = empty_state(), empty_state()
    apply_classified(first, 0, 0, "glass", "cam-1", T0)
    apply_classified(second, 1, 0, "glass", "cam-2", T0)
    apply_classified(second, 1, 1, "metal", "cam-2", T0)
    summed = totals([first, second])
    assert summed[("class", "glass", None)] == 2
    assert summed[("class", "metal", None)] == 1
    assert summed[("camera", "cam-2", None)] == 2
    assert summed[("class", "glass", "2026-11-23T12:00:00Z")] == 2
    assert totals([first, second]) == summed


def test_a_record_scored_after_later_ones_is_counted_once() -> None:
    state = empty_state()
    # Offset 3 was dropped by the stream and read again after 4..9, which are then replayed too.
    for offset in [0, 1, 2, 4, 5, 6, 7, 8, 9, 3]:
        assert apply_classified(state, 0, offset, "glass", "cam-1", T0)
    assert not any(apply_classified(state, 0, offset, "glass", "cam-1", T0) for offset in range(3, 10))
    assert state["classes"] == {"glass": 10}


def test_only_the_last_offsets_are_remembered_one_by_one() -> None:
    state = empty_state()
    first = 1_000_000  # a partition's offsets need not start at 0
    for offset in range(first, first + RECENT_SPAN + 10, 2):  # every other image was out of distribution
        assert apply_classified(state, 0, offset, "glass", "cam-1", T0)
    assert apply_classified(state, 0, first + RECENT_SPAN - 1, "glass", "cam-1", T0)  # a late first delivery
    assert not apply_classified(state, 0, first + 1, "glass", "cam-1", T0)  # older than the span: counted
    seen = state["source_offsets"]["0"]
    assert seen["base"] > first
    assert len(seen["bits"]) <= RECENT_SPAN // 4  # hex digits: the state stays small
