"""Exact counts under redelivery.

Each partition of the classified topic has one state record: counts per class and per camera, running and
per one-minute window, plus the highest captured-topic offset already counted for each source partition.
Scoring emits in captured-offset order, so a replayed ImageClassified carries an offset at or below that
mark and is skipped. Counts and mark change in one record (one changelog write), so a crash can neither
count an image twice nor lose it. Totals are sums of these absolute snapshots: summing is idempotent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

WINDOW = timedelta(minutes=1)
WINDOWS_KEPT = 60  # one hour of one-minute windows per partition

CountKey = tuple[str, str, str | None]  # (scope "class"|"camera", name, window start or None for running)


def empty_state() -> dict[str, Any]:
    return {"source_offsets": {}, "classes": {}, "cameras": {}, "windows": {}, "updates": 0}


def window_start(moment: datetime) -> str:
    start = moment.astimezone(UTC).replace(second=0, microsecond=0)
    return start.isoformat().replace("+00:00", "Z")


def apply_classified(state: dict[str, Any], source_partition: int, source_offset: int, predicted_class: str,
                     camera_id: str, captured_at: datetime) -> bool:
    """Count one classified image into state (in place). False when it was counted already."""
    mark = state["source_offsets"].get(str(source_partition), -1)
    if source_offset <= mark:
        return False
    state["source_offsets"][str(source_partition)] = source_offset
    for scope, name in (("classes", predicted_class), ("cameras", camera_id)):
        state[scope][name] = state[scope].get(name, 0) + 1
    window = state["windows"].setdefault(window_start(captured_at), {"classes": {}, "cameras": {}})
    for scope, name in (("classes", predicted_class), ("cameras", camera_id)):
        window[scope][name] = window[scope].get(name, 0) + 1
    for stale in sorted(state["windows"])[:-WINDOWS_KEPT]:
        del state["windows"][stale]
    state["updates"] += 1
    return True


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
