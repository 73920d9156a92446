"""How far one partition may be committed, told from what was read and what was acknowledged.

Every offset below `position` was acknowledged or is not in the log (compacted away, a transaction marker):
the consumer's fetches continue each other in log order until a seek, so offsets a fetch jumps over are not
in the log. A record that was fetched but never acknowledged holds the position, however many later records
were acknowledged: the stream dropped it, and the consumer reads the partition again from there.
"""

from __future__ import annotations


class PartitionProgress:
    """The commit position of one partition, from the offset reading started at."""

    def __init__(self, start: int) -> None:
        self.position = start
        self._next_read: int | None = None  # unknown until a fetch known to start at the position
        self._acked: set[int] = set()
        self._absent: set[int] = set()
        self._stalled_since: float | None = None
        self._stalled_at = start

    def read(self, offset: int) -> None:
        """A record fetched. Reads come in log order; one below the next expected offset was read before."""
        if self._next_read is None:
            self._next_read = offset + 1
            return
        if offset > self._next_read:
            self._absent.update(range(max(self._next_read, self.position), offset))
        self._next_read = max(self._next_read, offset + 1)

    def forget_reads(self) -> None:
        """A fetch may have raced a seek: the next read proves nothing about the offsets before it."""
        self._next_read = None

    def acked(self, offset: int) -> None:
        if offset >= self.position:
            self._acked.add(offset)

    def advance(self) -> int:
        """The offset to commit: the first one neither acknowledged nor absent."""
        while True:
            if self.position in self._acked:
                self._acked.remove(self.position)
            elif self.position in self._absent:
                self._absent.remove(self.position)
            else:
                return self.position
            self.position += 1

    def stalled(self, now: float, log_end: int | None, gap_patience_s: float, idle_patience_s: float) -> bool:
        """Call after `advance`. True when the record at the position is still not acknowledged: for
        `gap_patience_s` while later records were (streams acknowledge a partition's records in order, so it
        was dropped, or a gap there is not yet known to be one), or for `idle_patience_s` while the log holds it
        (`log_end`, the offset after the last record, if known). Either way, it is time to read again."""
        waiting = bool(self._acked) or max(self._next_read or 0, log_end or 0) > self.position
        if not waiting:
            self._stalled_since = None
            return False
        if self._stalled_since is None or self._stalled_at != self.position:
            self._stalled_since, self._stalled_at = now, self.position
        return now - self._stalled_since >= (gap_patience_s if self._acked else idle_patience_s)

    def read_again(self) -> None:
        """The consumer was moved back to the position: reads start there again."""
        self._next_read = self.position
        self._stalled_since = None
