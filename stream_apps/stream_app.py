"""The Faust app class every stream app here uses: it never commits past a record nobody processed.

While a rebalance is under way (flow control suspended) and after it (records fetched for the old
generation), Faust's stream skips records and acks them anyway (faust-streaming #221/#312). Its head-gap
check lets a commit pass one unacked offset and none while a partition has no committed offset, so a
commit could move past records nobody processed: the partition's next owner started after them, and an
image was lost now and then when a worker restarted. Here only acks made in the current generation with
flow running count; any other record stays uncommitted and is read again, a duplicate at worst.
"""

from __future__ import annotations

from faust import App
from faust.transport.drivers import aiokafka
from faust.types import Message, TransportT


class CurrentGenerationConsumer(aiokafka.Consumer):
    """Records acks only of current-generation records, made while the stream flows."""

    def ack(self, message: Message) -> bool:
        if message.generation_id == self.app.consumer_generation_id and self.app.flow_control.is_active():
            return super().ack(message)
        message.acked = True
        self._unacked_messages.discard(message)  # or the rebalance would wait for it forever
        return False


class CurrentGenerationTransport(aiokafka.Transport):
    Consumer = CurrentGenerationConsumer


class StreamApp(App):
    """A `faust.App` whose Kafka consumer is a `CurrentGenerationConsumer`."""

    def _new_transport(self) -> TransportT:
        return CurrentGenerationTransport(self.conf.broker_consumer, self)
