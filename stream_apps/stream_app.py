"""The Faust app class every stream app here uses: it never commits past a record nobody processed.

Around a rebalance faust-streaming drops records it has fetched (#221/#312): the stream skips, and acks,
records of the old generation and records that pass while flow control is suspended; resuming the flow
clears the stream queues, the drain loop cancels a delivery when the flow is suspended, and a fetch is cut
short when the flow stops, with the fetch position already past those records. Its commit check then lets
the committed offset pass the first unacked record, or any while a partition has no committed offset
(aiokafka does not even seek those back), so the partition's next owner started after records nobody
scored. Here:
- only acks made in the current generation while the stream flows count; streams iterate in Python, as the
  Cython iterator records acks in the consumer's lists itself, past `ack`;
- the committed offset never passes a record that was fetched and not acked since reading started (see
  partition_progress.py); partitions without a committed offset are read from the start of the log;
- a partition whose first unacked record stays behind later acks for HEAD_GAP_REREAD_S, or whose commit
  position stays short of the log's end for UNACKED_REREAD_S, is read again from there, between two
  fetches; a record processed already comes again, a duplicate at worst.
A table's changelog created just before the group formed is not taken for a partition mismatch (its partitions
are not known yet), which would crash the agent that writes the table.

And a worker started while the broker is down waits for it (capped backoff) instead of exiting.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from faust import App, Stream, Worker
from faust.transport.consumer import RecordMap
from faust.transport.drivers import aiokafka
from faust.types import TP, Message, TransportT

from infra.kafka_security import faust_broker
from infra.retry import Backoff, retry_transient_async
from infra.settings import Settings
from stream_apps.partition_progress import PartitionProgress

DEFAULT_RETRY_MAX_DELAY_S = 30.0  # WASTEX_RETRY_MAX_DELAY_S's default
HEAD_GAP_REREAD_S = 3.0  # several batches long: acks come in order, so a head left behind was dropped
UNACKED_REREAD_S = 15.0  # far longer than a batch takes, model loading included: the record was dropped
# A fetch waits until this much has arrived or FETCH_GATHER_MS has passed: with aiokafka's default of one byte, a
# camera's steady trickle costs one fetch per image (measured on a scoring worker's consumer thread: 3.3-4.2 ms
# of CPU per image at 17-30 img/s, 0.7-1.3 ms with these two). A record waits at most that long for its fetch.
FETCH_MIN_BYTES = 64 * 1024
FETCH_GATHER_MS = 100


class GatheringConsumerThread(aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, whose fetches gather records (FETCH_MIN_BYTES, FETCH_GATHER_MS) instead of
    returning each one as it arrives."""

    def _create_worker_consumer(self, transport: aiokafka.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes neither setting through; aiokafka reads both when the consumer starts its fetcher.
        consumer._fetch_min_bytes = FETCH_MIN_BYTES
        consumer._fetch_max_wait_ms = FETCH_GATHER_MS
        return consumer


class CurrentGenerationConsumer(aiokafka.Consumer):
    """Commits only what the current generation's stream acked, and reads dropped records again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._progress: dict[TP, PartitionProgress] = {}
        self._read_again: set[TP] = set()
        self._confirmed: dict[TP, int] = {}  # offsets the broker confirmed as committed, per partition
        self._seeks = 0  # a fetch that overlapped a seek may hold records from before it

    def _new_consumer_thread(self) -> GatheringConsumerThread:
        return GatheringConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _tracked(self, tp: TP) -> bool:
        return self.app.topics.acks_enabled_for(tp.topic)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        assigned = [tp for tp in self.assignment() if self._tracked(tp)]
        earliest = await self.earliest_offsets(*assigned) if assigned else {}
        self._seeks += 1
        committed = await super().seek_to_committed()
        self._progress, self._read_again = {}, set()
        self._confirmed = {tp: offset for tp, offset in committed.items() if offset is not None and offset >= 0}
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
            self._confirmed.pop(tp, None)
            self._read_again.discard(tp)
        await super().on_partitions_revoked(revoked)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> RecordMap:
        """Every record fetched, before Faust filters any: what the stream must ack before a commit passes."""
        if self._read_again:
            await self._seek_back_to_dropped()
        seeks = self._seeks
        records = await super()._getmany(active_partitions, timeout)
        for tp, progress in self._progress.items():
            if seeks != self._seeks:
                progress.forget_reads()
                continue
            for record in records.get(tp, ()):
                progress.read(record.offset)
        return records

    async def _seek_back_to_dropped(self) -> None:
        # Called before a fetch: Faust iterates a whole fetch before asking for the next, so no record
        # fetched before these seeks is still on its way to the streams.
        for tp in self._read_again & self.assignment():
            progress = self._progress[tp]
            self.log.info("reading %s again from offset %d: a record there was dropped", tp, progress.position)
            self._seeks += 1
            await self.seek(tp, progress.position)
            progress.read_again()
        self._read_again.clear()

    def ack(self, message: Message) -> bool:
        if message.generation_id != self.app.consumer_generation_id or not self.app.flow_control.is_active():
            message.acked = True
            self._unacked_messages.discard(message)  # or the rebalance would wait for it forever
            return False
        progress = self._progress.get(message.tp)
        if progress is not None:
            progress.acked(message.offset)
        return super().ack(message)

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        committed = await super()._commit(offsets)
        if committed:  # Faust notes an offset as committed even when the commit failed (the broker down, say)
            self._confirmed.update(offsets)
        return committed

    def topic_partitions(self, topic: str) -> int | None:
        # The group's metadata snapshot lists a topic created moments before the join (a table's changelog) with 0
        # partitions until its next refresh, minutes later; Faust would take that for a partition mismatch and
        # crash the table's agent on its first write. 0 means not known yet.
        return super().topic_partitions(topic) or None

    def committed_past(self, tp: TP, offset: int) -> bool:
        """Whether the broker confirmed a commit of `tp` beyond `offset`: no consumer reads that record again."""
        committed = self._confirmed.get(tp)
        return committed is not None and committed > offset

    def _filter_tps_with_pending_acks(self, topics: set | None = None) -> Iterator[TP]:
        # Every partition read, acked lately or not: a dropped record with nothing acked after it is read again.
        return (tp for tp in list(self._progress) if topics is None or tp in topics or tp.topic in topics)

    def _new_offset(self, tp: TP) -> int | None:
        progress = self._progress.get(tp)
        # The client drops a revoked partition before Faust's revoke callback runs: its next owner commits it.
        if progress is None or tp not in self.assignment():
            return None
        position = progress.advance()
        if progress.stalled(time.monotonic(), self.highwater(tp), HEAD_GAP_REREAD_S, UNACKED_REREAD_S):
            self._read_again.add(tp)
        # Faust's own ack list only de-duplicates acks here: keep what the position has not passed.
        self._acked[tp] = [offset for offset in self._acked[tp] if offset >= position]
        self._acked_index[tp] = set(self._acked[tp])
        return position


class BrokerWaitingProducer(aiokafka.Producer):
    """Waits for the broker when the worker starts, instead of exiting: a worker started while Kafka is down (or
    restarting) comes up with it. Once started, aiokafka itself reconnects through a broker restart."""

    async def on_start(self) -> None:
        max_delay_s = self.app.retry_max_delay_s  # type: ignore[attr-defined]  # a StreamApp's
        await retry_transient_async(self._reach_broker, what="kafka (starting the worker)",
                                    backoff=Backoff(cap_s=max_delay_s))
        await super().on_start()

    async def _reach_broker(self) -> None:
        probe = self._new_producer()
        try:
            await probe.start()
        finally:
            await probe.stop()


class CurrentGenerationTransport(aiokafka.Transport):
    Consumer = CurrentGenerationConsumer
    Producer = BrokerWaitingProducer


class PythonIteratedStream(Stream):
    """A `faust.Stream` that always iterates in Python, so every ack goes through `Consumer.ack`."""

    def __aiter__(self) -> AsyncIterator:
        iterator = self._py_aiter()
        self._active_agens.add(iterator)  # as Stream.__aiter__ does, so stopping the stream closes it
        return iterator


class StreamApp(App):
    """A `faust.App` whose Kafka consumer is a `CurrentGenerationConsumer`, whose streams ack through it, and
    whose producer waits for the broker at start (with backoff capped at `retry_max_delay_s`)."""

    def __init__(self, *args: Any, retry_max_delay_s: float = DEFAULT_RETRY_MAX_DELAY_S, **kwargs: Any) -> None:
        kwargs.setdefault("Stream", PythonIteratedStream)
        self.retry_max_delay_s = retry_max_delay_s
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> TransportT:
        return CurrentGenerationTransport(self.conf.broker_consumer, self)


class WorkerWithStopDeadline(Worker):
    """A Faust worker that exits within `stop_timeout_s` of SIGTERM or SIGINT, even while a store is unreachable.

    Faust's stop commits offsets and flushes the producer, which waits for the broker; a worker asked to stop
    during a broker outage would otherwise hang. Exiting without that loses nothing: whatever was not committed
    is read again by the partition's next owner, and outcome ids make the repeat a no-op.
    """

    def __init__(self, *args: Any, stop_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop_timeout_s = stop_timeout_s

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        deadline = threading.Timer(self._stop_timeout_s, self._exit_now)
        deadline.daemon = True
        deadline.start()
        super()._schedule_shutdown(signal)

    def _exit_now(self) -> None:
        logging.getLogger(__name__).error(
            "not stopped %.0f s after the signal (a store unreachable?): exiting now; records not committed are "
            "read again by the next owner of their partition", self._stop_timeout_s)
        os._exit(1)


def configured_stream_app(settings: Settings, group: str, worker_name: str, web_port: int, **tuning: Any) -> StreamApp:
    """The StreamApp every worker here runs, with what all of them share; `tuning` adds or overrides settings."""
    datadir = settings.state_dir / "faust" / worker_name
    datadir.mkdir(parents=True, exist_ok=True)
    shared: dict[str, Any] = dict(
        store="memory://",
        datadir=str(datadir),
        web_host="127.0.0.1",
        web_port=web_port,
        canonical_url=f"http://127.0.0.1:{web_port}",
        topic_replication_factor=1,
        producer_acks=-1,
        # A worker that died leaves the group after 15 s instead of a minute; its partitions move on sooner.
        broker_session_timeout=15,
        broker_heartbeat_interval=3,
        consumer_auto_offset_reset="earliest",
        retry_max_delay_s=settings.retry_max_delay_s,
    )
    # The prefix keeps deployments' groups and changelogs apart.
    return StreamApp(f"{settings.topic_prefix}{group}", **faust_broker(settings), **(shared | tuning))
