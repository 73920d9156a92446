"""Exact counts under redelivery, in a state that stays bounded.

Each partition of the classified topic has one state record: counts per class and per camera, running and
per one-minute window, plus which captured-topic offsets were counted for each source partition. Scoring
emits mostly in captured-offset order, but a record the stream dropped is scored when it is read again, after
later ones: so each source partition keeps a bit per offset for its last RECENT_SPAN offsets, and everything
below them counts as counted. A replayed ImageClassified finds its bit set and is skipped. Counts and bits
change in one record (one changelog write), so a crash can neither count an image twice nor lose it.
Totals are sums of these absolute snapshots: summing is idempotent.

What keeps the state bounded (`CountLimits`):
- windows are kept for the last `windows_kept_min` minutes before now, whatever the images claim; an image
  older than that is counted in the running totals only;
- `captured_at` comes from the client: an image captured more than `clock_skew_s` in the future is counted in
  the window of the moment it was scored instead, so far-future windows cannot push real ones out;
- at most `max_cameras` cameras are counted per partition state: the least recently counted camera is dropped
  first, its running total and its windows with it (a camera seen again starts from zero). Class counts are
  never dropped, so they stay exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.settings import Settings

WINDOW = timedelta(minutes=1)
# A dropped record is read again within seconds: far fewer offsets than this arrive in between.
RECENT_SPAN = 4096

CountKey = tuple[str, str, str | None]  # (scope "class"|"camera", name, window start or None for running)


@dataclass(frozen=True)
class CountLimits:
    windows_kept_min: int = 60
    clock_skew_s: float = 300.0
    max_cameras: int = 10_000

    @classmethod
    def from_settings(cls, settings: Settings) -> CountLimits:
        return cls(settings.count_windows_kept_min, settings.clock_skew_s, settings.count_max_cameras)

    def oldest_window(self, now: datetime) -> str:
        """The start of the oldest window still live at `now`."""
        return window_start(now - timedelta(minutes=self.windows_kept_min) + WINDOW)


def empty_state() -> dict[str, Any]:
    return {"source_offsets": {}, "classes": {}, "cameras": {}, "windows": {}, "updates": 0}


def window_start(moment: datetime) -> str:
    start = moment.astimezone(UTC).replace(second=0, microsecond=0)
    return start.isoformat().replace("+00:00", "Z")


def counted_at(captured_at: datetime, scored_at: datetime, limits: CountLimits) -> datetime:
    """The moment an image is counted at: when it was captured, or when it was scored if the capture time lies
    more than the allowed clock skew in the future (clamped, not refused: the image is real, its clock is not)."""
    return scored_at if captured_at - scored_at > timedelta(seconds=limits.clock_skew_s) else captured_at


def apply_classified(state: dict[str, Any], source_partition: int, source_offset: int, predicted_class: str,
                     camera_id: str, captured_at: datetime, scored_at: datetime, now: datetime,
                     limits: CountLimits) -> bool:
    """Count one classified image into state (in place) and prune it to `limits` at `now`. False when the image
    was counted already (nothing changes then)."""
    seen = state["source_offsets"].setdefault(str(source_partition), {"base": 0, "bits": "0"})
    if _counted(seen, source_offset):
        return False
    _mark_counted(seen, source_offset)
    _increment(state["classes"], predicted_class)
    _increment(state["cameras"], camera_id)
    start = window_start(counted_at(captured_at, scored_at, limits))
    if start >= limits.oldest_window(now):
        window = state["windows"].setdefault(start, {"classes": {}, "cameras": {}})
        _increment(window["classes"], predicted_class)
        _increment(window["cameras"], camera_id)
    _forget_least_recent_cameras(state, limits.max_cameras)
    prune_windows(state, now, limits)
    state["updates"] += 1
    return True


def prune_windows(state: dict[str, Any], now: datetime, limits: CountLimits) -> bool:
    """Drop (in place) the windows older than `limits.windows_kept_min` minutes before now; True if any was."""
    oldest = limits.oldest_window(now)
    stale = [start for start in state["windows"] if start < oldest]
    for start in stale:
        del state["windows"][start]
    return bool(stale)


def live_windows(state: Mapping[str, Any], now: datetime, limits: CountLimits) -> dict[str, Any]:
    """A copy of `state` without the windows that are no longer live at `now` (the state itself is unchanged)."""
    oldest = limits.oldest_window(now)
    return {**state, "windows": {start: window for start, window in state["windows"].items() if start >= oldest}}


def _increment(counters: dict[str, int], name: str) -> None:
    # Re-inserted at the end: a dict's order is then least recently counted first (JSON keeps the order).
    counters[name] = counters.pop(name, 0) + 1


def _forget_least_recent_cameras(state: dict[str, Any], max_cameras: int) -> None:
    cameras = state["cameras"]
    while len(cameras) > max_cameras:
        dropped = next(iter(cameras))
        del cameras[dropped]
        for window in state["windows"].values():
            window["cameras"].pop(dropped, None)


def _counted(seen: dict[str, Any], offset: int) -> bool:
    """Offsets below `base` count as counted; bit i of `bits` (hex) is offset base + i."""
    return offset < seen["base"] or bool(int(seen["bits"], 16) >> (offset - seen["base"]) & 1)


def _mark_counted(seen: dict[str, Any], offset: int) -> None:
    bits = int(seen["bits"], 16) | 1 << (offset - seen["base"])
    overflow = bits.bit_length() - RECENT_SPAN
    if overflow > 0:
        bits >>= overflow
        seen["base"] += overflow
    seen["bits"] = format(bits, "x")


_SCOPES = (("classes", "class"), ("cameras", "camera"))


def totals(snapshots: Iterable[Mapping[str, Any]], oldest_window: str = "") -> Counter[CountKey]:
    """Running and windowed counts summed over partition snapshots; windows starting before `oldest_window`
    (an ISO start, as `CountLimits.oldest_window` gives) are left out."""
    summed: Counter[CountKey] = Counter()
    for snapshot in snapshots:
        for field, scope in _SCOPES:
            for name, count in snapshot[field].items():
                summed[(scope, name, None)] += count
            for start, window in snapshot["windows"].items():
                if start < oldest_window:
                    continue
                for name, count in window[field].items():
                    summed[(scope, name, start)] += count
    return summed


def window_end(start: str) -> str:
    end = datetime.fromisoformat(start.replace("Z", "+00:00")) + WINDOW
    return end.isoformat().replace("+00:00", "Z")
