"""Counting stays exact when classified events are redelivered, totals sum partition snapshots, and the state
stays bounded: windows live relative to now, far-future capture times are clamped, cameras are capped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stream_apps.scoring.counting import (
    RECENT_SPAN,
    CountLimits,
    apply_classified,
    empty_state,
    live_windows,
    prune_windows,
    totals,
    window_end,
)

T0 = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)
LIMITS = CountLimits(windows_kept_min=60, clock_skew_s=300, max_cameras=10_000)


def count(state: dict, partition: int, offset: int, name: str, camera: str, captured_at: datetime,
          now: datetime | None = None, limits: CountLimits = LIMITS) -> bool:
    """Counted as the live worker does: scored (and counted) at `now`, by default the capture time."""
    now = now or captured_at
    return apply_classified(state, partition, offset, name, camera, captured_at, now, now, limits)


def test_replayed_events_are_not_counted_twice() -> None:
    state = empty_state()
    stream = [(0, offset, "glass" if offset % 2 else "metal", "cam-1", T0) for offset in range(10)]
    assert all(count(state, *event) for event in stream)
    # A restarted scorer re-emits from its last committed offset (here 6): nothing changes.
    assert not any(count(state, *event) for event in stream[6:])
    assert state["classes"] == {"glass": 5, "metal": 5}
    assert state["cameras"] == {"cam-1": 10}
    assert state["updates"] == 10
    # Source partitions are tracked apart: offset 3 of partition 1 is new.
    assert count(state, 1, 3, "paper", "cam-2", T0)


def test_events_fall_into_one_minute_windows_and_windows_older_than_the_kept_minutes_are_dropped() -> None:
    state = empty_state()
    count(state, 0, 0, "glass", "cam-1", T0)
    count(state, 0, 1, "glass", "cam-1", T0 + timedelta(seconds=20))
    count(state, 0, 2, "glass", "cam-1", T0 + timedelta(seconds=40))
    assert state["windows"] == {
        "2026-11-23T12:00:00Z": {"classes": {"glass": 2}, "cameras": {"cam-1": 2}},
        "2026-11-23T12:01:00Z": {"classes": {"glass": 1}, "cameras": {"cam-1": 1}},
    }
    assert window_end("2026-11-23T12:00:00Z") == "2026-11-23T12:01:00Z"
    for minute in range(65):
        count(state, 0, 10 + minute, "glass", "cam-1", T0 + timedelta(minutes=minute))
    assert len(state["windows"]) == 60
    assert min(state["windows"]) == "2026-11-23T12:05:00Z"
    assert state["classes"]["glass"] == 3 + 65


def test_windows_are_pruned_relative_to_now_not_to_the_windows_seen() -> None:
    state = empty_state()
    limits = CountLimits(windows_kept_min=10)
    count(state, 0, 0, "glass", "cam-1", T0, limits=limits)
    # Two hours later an image captured an hour ago arrives: it is counted, but only in the running totals.
    later = T0 + timedelta(hours=2)
    assert count(state, 0, 1, "metal", "cam-1", T0 + timedelta(hours=1), now=later, limits=limits)
    assert state["windows"] == {}
    assert state["classes"] == {"glass": 1, "metal": 1}
    count(state, 0, 2, "metal", "cam-1", later, limits=limits)
    assert list(state["windows"]) == ["2026-11-23T14:00:00Z"]
    # Nothing counted for ten more minutes: a timer still sees the window go.
    assert live_windows(state, later + timedelta(minutes=9), limits)["windows"] == state["windows"]
    assert live_windows(state, later + timedelta(minutes=10), limits)["windows"] == {}
    assert state["windows"], "live_windows leaves the state itself alone"
    assert prune_windows(state, later + timedelta(minutes=10), limits)
    assert state["windows"] == {} and state["classes"] == {"glass": 1, "metal": 2}


def test_a_capture_time_far_in_the_future_is_counted_when_it_was_scored() -> None:
    state = empty_state()
    near = T0 + timedelta(seconds=LIMITS.clock_skew_s - 10)  # within the skew: taken as it is
    far = T0 + timedelta(days=365)
    assert count(state, 0, 0, "glass", "cam-1", near, now=T0)
    assert count(state, 0, 1, "glass", "cam-1", far, now=T0)
    assert state["windows"] == {
        "2026-11-23T12:00:00Z": {"classes": {"glass": 1}, "cameras": {"cam-1": 1}},
        "2026-11-23T12:05:00Z": {"classes": {"glass": 1}, "cameras": {"cam-1": 1}},
    }


def test_far_future_images_cannot_push_the_real_windows_out() -> None:
    state = empty_state()
    limits = CountLimits(windows_kept_min=5)
    count(state, 0, 0, "glass", "cam-1", T0, limits=limits)
    for offset in range(1, 100):
        count(state, 0, offset, "metal", "cam-1", T0 + timedelta(days=offset), now=T0, limits=limits)
    assert list(state["windows"]) == ["2026-11-23T12:00:00Z"]
    assert state["windows"]["2026-11-23T12:00:00Z"]["classes"] == {"glass": 1, "metal": 99}


def test_the_least_recently_counted_camera_is_dropped_beyond_the_cap_and_classes_stay_exact() -> None:
    state = empty_state()
    limits = CountLimits(max_cameras=3)
    for offset, camera in enumerate(["cam-a", "cam-b", "cam-c", "cam-a", "cam-d"]):
        assert count(state, 0, offset, "glass", camera, T0, limits=limits)
    assert state["cameras"] == {"cam-c": 1, "cam-a": 2, "cam-d": 1}  # cam-b was counted least recently
    assert "cam-b" not in state["windows"]["2026-11-23T12:00:00Z"]["cameras"]
    for offset in range(5, 1000):
        count(state, 0, offset, "metal", f"client-made-{offset}", T0, limits=limits)
    assert len(state["cameras"]) == 3
    assert all(len(window["cameras"]) <= 3 for window in state["windows"].values())
    assert state["classes"] == {"glass": 5, "metal": 995}


def test_totals_sum_partitions_and_resumming_changes_nothing() -> None:
    first, second = empty_state(), empty_state()
    count(first, 0, 0, "glass", "cam-1", T0)
    count(second, 1, 0, "glass", "cam-2", T0)
    count(second, 1, 1, "metal", "cam-2", T0)
    summed = totals([first, second])
    assert summed[("class", "glass", None)] == 2
    assert summed[("class", "metal", None)] == 1
    assert summed[("camera", "cam-2", None)] == 2
    assert summed[("class", "glass", "2026-11-23T12:00:00Z")] == 2
    assert totals([first, second]) == summed
    later = totals([first, second], oldest_window="2026-11-23T12:01:00Z")
    assert later[("class", "glass", None)] == 2
    assert ("class", "glass", "2026-11-23T12:00:00Z") not in later


def test_a_record_scored_after_later_ones_is_counted_once() -> None:
    state = empty_state()
    # Offset 3 was dropped by the stream and read again after 4..9, which are then replayed too.
    for offset in [0, 1, 2, 4, 5, 6, 7, 8, 9, 3]:
        assert count(state, 0, offset, "glass", "cam-1", T0)
    assert not any(count(state, 0, offset, "glass", "cam-1", T0) for offset in range(3, 10))
    assert state["classes"] == {"glass": 10}


def test_only_the_last_offsets_are_remembered_one_by_one() -> None:
    state = empty_state()
    first = 1_000_000  # a partition's offsets need not start at 0
    for offset in range(first, first + RECENT_SPAN + 10, 2):  # every other image was out of distribution
        assert count(state, 0, offset, "glass", "cam-1", T0)
    assert count(state, 0, first + RECENT_SPAN - 1, "glass", "cam-1", T0)  # a late first delivery
    assert not count(state, 0, first + 1, "glass", "cam-1", T0)  # older than the span: counted
    seen = state["source_offsets"]["0"]
    assert seen["base"] > first
    assert len(seen["bits"]) <= RECENT_SPAN // 4  # hex digits: the state stays small
