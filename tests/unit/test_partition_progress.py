"""The commit position never passes a record that was read and not acknowledged."""

from __future__ import annotations

import pytest

from stream_apps.partition_progress import PartitionProgress

pytestmark = pytest.mark.unit


def read_and_ack(progress: PartitionProgress, offsets: list[int], acked: list[int] | None = None) -> None:
    for offset in offsets:
        progress.read(offset)
    for offset in offsets if acked is None else acked:
        progress.acked(offset)


def test_the_position_follows_acknowledged_records() -> None:
    progress = PartitionProgress(10)
    read_and_ack(progress, [10, 11, 12])
    assert progress.advance() == 13
    assert not progress.stalled(log_end=None, now=0.0, gap_patience_s=5.0, idle_patience_s=30.0)


def test_a_dropped_record_holds_the_position_and_is_read_again_after_the_patience() -> None:
    progress = PartitionProgress(90)
    read_and_ack(progress, [90, 91, 92, 93], acked=[90, 92, 93])  # the stream dropped 91
    assert progress.advance() == 91
    assert not progress.stalled(log_end=None, now=100.0, gap_patience_s=5.0, idle_patience_s=30.0)
    assert progress.advance() == 91
    assert progress.stalled(log_end=None, now=105.0, gap_patience_s=5.0, idle_patience_s=30.0)
    progress.read_again()
    read_and_ack(progress, [91, 92, 93])
    assert progress.advance() == 94
    assert not progress.stalled(log_end=None, now=106.0, gap_patience_s=5.0, idle_patience_s=30.0)


def test_offsets_a_read_jumps_over_are_not_in_the_log() -> None:
    progress = PartitionProgress(0)
    read_and_ack(progress, [0, 1, 5, 6])  # 2..4 compacted away
    assert progress.advance() == 7


def test_a_gap_where_reading_starts_is_skipped_once_a_read_from_there_proves_it() -> None:
    progress = PartitionProgress(3)
    read_and_ack(progress, [4, 5])  # the fetch may have begun before the seek to 3: no proof yet
    assert progress.advance() == 3
    assert progress.stalled(log_end=None, now=0.0, gap_patience_s=0.0, idle_patience_s=30.0)
    progress.read_again()
    read_and_ack(progress, [4, 5])  # read again from 3, the log returns 4 first: 3 is a transaction marker
    assert progress.advance() == 6


def test_a_fetch_that_raced_a_seek_proves_nothing() -> None:
    progress = PartitionProgress(0)
    read_and_ack(progress, [0, 1])
    progress.forget_reads()
    progress.read(7)  # fetched before a seek back to 2
    read_and_ack(progress, [2, 3], acked=[])
    assert progress.advance() == 2
    read_and_ack(progress, [2, 3])
    assert progress.advance() == 4


def test_acks_below_the_position_change_nothing() -> None:
    progress = PartitionProgress(5)
    read_and_ack(progress, [5, 6])
    progress.advance()
    progress.acked(5)  # a duplicate after a read again
    assert progress.advance() == 7
    assert not progress.stalled(log_end=None, now=0.0, gap_patience_s=0.0, idle_patience_s=30.0)


def test_the_last_record_fetched_is_read_again_when_it_stays_unacked() -> None:
    progress = PartitionProgress(0)
    read_and_ack(progress, [0, 1, 2], acked=[0, 1])  # 2 was dropped and nothing came after it
    assert progress.advance() == 2
    assert not progress.stalled(log_end=None, now=100.0, gap_patience_s=5.0, idle_patience_s=30.0)
    assert not progress.stalled(log_end=None, now=129.0, gap_patience_s=5.0, idle_patience_s=30.0)
    assert progress.stalled(log_end=None, now=130.0, gap_patience_s=5.0, idle_patience_s=30.0)


def test_a_slow_stream_that_keeps_acking_is_not_read_again() -> None:
    progress = PartitionProgress(0)
    for second, offset in enumerate(range(0, 100, 2)):
        read_and_ack(progress, [offset, offset + 1], acked=[offset])  # one record in process at any time
        progress.advance()
        assert not progress.stalled(log_end=None, now=float(second * 20), gap_patience_s=5.0, idle_patience_s=30.0)
        progress.acked(offset + 1)


def test_a_position_short_of_the_log_end_is_read_again_even_if_no_fetch_was_seen() -> None:
    progress = PartitionProgress(40)
    progress.forget_reads()  # the only fetch raced a seek, and what it held was dropped unacked
    assert not progress.stalled(now=0.0, log_end=40, gap_patience_s=5.0, idle_patience_s=30.0)
    assert not progress.stalled(now=10.0, log_end=46, gap_patience_s=5.0, idle_patience_s=30.0)
    assert progress.stalled(now=40.0, log_end=46, gap_patience_s=5.0, idle_patience_s=30.0)
