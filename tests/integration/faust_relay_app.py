"""A minimal Faust app for the broker test: relays records from one topic to another, upper-cased."""

from __future__ import annotations

import os

import faust

app = faust.App(
    os.environ["RELAY_APP_ID"],
    broker=f"kafka://{os.environ['RELAY_BOOTSTRAP']}",
    datadir=os.environ["RELAY_DATADIR"],
    store="memory://",
    web_enabled=False,
)
source = app.topic(os.environ["RELAY_SOURCE"], value_serializer="raw")
sink = app.topic(os.environ["RELAY_SINK"], value_serializer="raw")


@app.agent(source)
async def relay(stream):
    async for value in stream:
        await sink.send(value=value.upper())
