"""A minimal Faust app for the broker tests: relays records from one topic to another, upper-cased.

With RELAY_DROP_ONCE set, the first delivery of that value is left unacked, as faust-streaming drops
records around a rebalance; with RELAY_STREAM_APP=1 the app is the stream apps' `StreamApp`.
"""

from __future__ import annotations

import os

import faust

from infra.kafka_security import faust_credentials
from infra.settings import load_settings
from stream_apps.stream_app import StreamApp

app_class = StreamApp if os.environ.get("RELAY_STREAM_APP") == "1" else faust.App
app = app_class(
    os.environ["RELAY_APP_ID"],
    broker=f"kafka://{os.environ['RELAY_BOOTSTRAP']}",
    broker_credentials=faust_credentials(load_settings()),
    datadir=os.environ["RELAY_DATADIR"],
    store="memory://",
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(os.environ["RELAY_SOURCE"], value_serializer="raw")
sink = app.topic(os.environ["RELAY_SINK"], value_serializer="raw")
drop_once = os.environ.get("RELAY_DROP_ONCE", "").encode()
dropped: set[bytes] = set()


@app.agent(source)
async def relay(stream):
    async for event in stream.noack().events():
        if event.value == drop_once and event.value not in dropped:
            dropped.add(event.value)
            continue
        await sink.send(value=event.value.upper())
        event.ack()
