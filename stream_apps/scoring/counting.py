"""Exact counts under redelivery.

Each partition of the classified topic has one state record: counts per class and per camera, running and
per one-minute window, plus which captured-topic offsets were counted for each source partition. Scoring
emits mostly in captured-offset order, but a record the stream dropped is scored when it is read again, after
later ones: so each source partition keeps a bit per offset for its last RECENT_SPAN offsets, and everything
below them counts as counted. A replayed ImageClassified finds its bit set and is skipped. Counts and bits
change in one record (one changelog write), so a crash can neither count an image twice nor lose it.
Totals are sums of these absolute snapshots: summing is idempotent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

WINDOW = timedelta(minutes=1)
WINDOWS_KEPT = 60  # one hour of one-minute windows per partition
# A dropped record is read again within seconds: far fewer offsets than this arrive in between.
RECENT_SPAN = 4096

CountKey = tuple[str, str, str | None]  # (scope "class"|"camera", name, window start or None for running)


def empty_state() -> dict[str, Any]:
    return {"source_offsets": {}, "classes": {}, "cameras": {}, "windows": {}, "updates": 0}


def window_start(moment: datetime) -> str:
    start = moment.astimezone(UTC).replace(second=0, microsecond=0)
    return start.isoformat().replace("+00:00", "Z")


def apply_classified(state: dict[str, Any], source_partition: int, source_offset: int, predicted_class: str,
                     camera_id: str, captured_at: datetime) -> bool:
    """Count one classified image into state (in place). False when it was counted already."""
    seen = state["source_offsets"].setdefault(str(source_partition), {"base": 0, "bits": "0"})
    if _counted(seen, source_offset):
        return False
    _mark_counted(seen, source_offset)
    for scope, name in (("classes", predicted_class), ("cameras", camera_id)):
        state[scope][name] = state[scope].get(name, 0) + 1
    window = state["windows"].setdefault(window_start(captured_at), {"classes": {}, "cameras": {}})
    for scope, name in (("classes", predicted_class), ("cameras", camera_id)):
        window[scope][name] = window[scope].get(name, 0) + 1
    for stale in sorted(state["windows"])[:-WINDOWS_KEPT]:
        del state["windows"][stale]
    state["updates"] += 1
    return True


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


def totals(snapshots: Iterable[Mapping[str, Any]]) -> Counter[CountKey]:
    """Running and windowed counts summed over partition snapshots."""
    summed: Counter[CountKey] = Counter()
    for snapshot in snapshots:
        for field, scope in _SCOPES:
            for name, count in snapshot[field].items():
                summed[(scope, name, None)] += count
            for start, window in snapshot["windows"].items():
                for name, count in window[field].items():
                    summed[(scope, name, start)] += count
    return summed


def window_end(start: str) -> str:
    end = datetime.fromisoformat(start.replace("Z", "+00:00")) + WINDOW
    return end.isoformat().replace("+00:00", "Z")
