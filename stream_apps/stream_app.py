"""The Faust app class every stream app here uses: it never commits past a record nobody processed.

Around a rebalance faust-streaming drops records it has fetched (#221/#312): the stream skips, and acks,
records of the old generation and records that pass while flow control is suspended; resuming the flow
clears the stream queues, and the drain loop cancels a delivery when the flow is suspended, with the read
position already past those records. Its commit check then lets the committed offset pass the first unacked
record, or any while a partition has no committed offset (aiokafka does not even seek those back), so the
partition's next owner started after records nobody scored. Here:
- only acks made in the current generation while the stream flows count;
- the committed offset never passes a record that was read and not acked since reading started (see
  partition_progress.py); partitions without a committed offset are read from the start of the log;
- a partition whose head stays unacked behind later acks for HEAD_GAP_REREAD_S is read again from there,
  between two fetches; a record processed already comes again, a duplicate at worst.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from faust import App
from faust.transport.drivers import aiokafka
from faust.types import TP, Message, TransportT

from stream_apps.partition_progress import PartitionProgress

HEAD_GAP_REREAD_S = 5.0  # far longer than a batch takes: acks come in order, so the head was dropped


class CurrentGenerationConsumer(aiokafka.Consumer):
    """Commits only what the current generation's stream acked, and reads dropped records again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._progress: dict[TP, PartitionProgress] = {}
        self._read_again: set[TP] = set()

    def _tracked(self, tp: TP) -> bool:
        return self.app.topics.acks_enabled_for(tp.topic)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        assigned = [tp for tp in self.assignment() if self._tracked(tp)]
        earliest = await self.earliest_offsets(*assigned) if assigned else {}
        committed = await super().seek_to_committed()
        self._progress, self._read_again = {}, set()
        for tp in assigned:
            start = committed.get(tp)
            if not start or start < 0:  # nothing committed: aiokafka left the fetch position where it was
                start = earliest[tp]
                await self._seek(tp, start)
            self._progress[tp] = PartitionProgress(start)
        return committed

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._progress.pop(tp, None)
            self._read_again.discard(tp)
        await super().on_partitions_revoked(revoked)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        # Here, between two fetches, no record fetched before the seek is still on its way to the streams.
        for tp in self._read_again & self.assignment():
            progress = self._progress[tp]
            self.log.info("reading %s again from offset %d: a record there was dropped", tp, progress.position)
            await self.seek(tp, progress.position)
            progress.read_again()
        self._read_again.clear()
        async for tp, message in super().getmany(timeout):
            progress = self._progress.get(tp)
            if progress is not None:
                progress.read(message.offset)
            yield tp, message

    def ack(self, message: Message) -> bool:
        if message.generation_id != self.app.consumer_generation_id or not self.app.flow_control.is_active():
            message.acked = True
            self._unacked_messages.discard(message)  # or the rebalance would wait for it forever
            return False
        progress = self._progress.get(message.tp)
        if progress is not None:
            progress.acked(message.offset)
        return super().ack(message)

    def _new_offset(self, tp: TP) -> int | None:
        progress = self._progress.get(tp)
        if progress is None:
            return None
        position = progress.advance()
        if progress.stalled(time.monotonic(), HEAD_GAP_REREAD_S):
            self._read_again.add(tp)
        # Faust's own ack list only de-duplicates acks here: keep what the position has not passed.
        self._acked[tp] = [offset for offset in self._acked[tp] if offset >= position]
        self._acked_index[tp] = set(self._acked[tp])
        return position


class CurrentGenerationTransport(aiokafka.Transport):
    Consumer = CurrentGenerationConsumer


class StreamApp(App):
    """A `faust.App` whose Kafka consumer is a `CurrentGenerationConsumer`."""

    def _new_transport(self) -> TransportT:
        return CurrentGenerationTransport(self.conf.broker_consumer, self)
