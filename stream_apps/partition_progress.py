"""How far one partition may be committed, told from what was read and what was acknowledged.

Every offset below `position` was acknowledged or is not in the log (compacted away, a transaction marker):
reads come in log order after a seek, so offsets a read jumps over are not in the log. A record that was
read but never acknowledged holds the position, however many later records were acknowledged: the stream
dropped it, and the consumer reads the partition again from there.
"""

from __future__ import annotations


class PartitionProgress:
    """The commit position of one partition, from the offset reading started at."""

    def __init__(self, start: int) -> None:
        self.position = start
        self._next_read = start
        self._acked: set[int] = set()
        self._absent: set[int] = set()
        self._stalled_since: float | None = None

    def read(self, offset: int) -> None:
        """A record fetched. Reads come in log order; one below the next expected offset was read before."""
        if offset > self._next_read:
            self._absent.update(range(max(self._next_read, self.position), offset))
        self._next_read = max(self._next_read, offset + 1)

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

    def stalled(self, now: float, patience_s: float) -> bool:
        """True once later records were acknowledged for `patience_s` while the one at the position was not.

        Call after `advance`. Streams acknowledge a partition's records in order, so the record at the position
        was dropped, or a gap at the position is not yet known to be one: either way, it is time to read again.
        """
        if not self._acked:
            self._stalled_since = None
            return False
        if self._stalled_since is None:
            self._stalled_since = now
        return now - self._stalled_since >= patience_s

    def read_again(self) -> None:
        """The consumer was moved back to the position: reads start there again."""
        self._next_read = self.position
        self._stalled_since = None
