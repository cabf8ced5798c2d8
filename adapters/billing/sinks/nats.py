"""`[sinks.nats]`: every reading of a batch published to a NATS JetStream stream, one message each.

A message is the reading as JSON (the billing API's shape) on `subject`, with the headers
`Nats-Msg-Id: reading-<reading_id>` (the server keeps one copy of a message it receives twice
within the stream's duplicate window, 2 minutes by default) and `Meter-Gateway-Batch: <batch id>`.
The batch is acknowledged when the stream has acknowledged every message of it. With
`create_stream` the stream is added (file storage, the subject) when the server does not have
it. Consumers read it with durable consumers of their own, so one that restarts goes on where it
acknowledged last.
"""

from __future__ import annotations

from typing import Any

import nats
import orjson
from nats.js.errors import NotFoundError

from adapters.billing.sinks.config import NatsSinkConfig
from gateway.billing_delivery import Batch


class NatsSink:
    def __init__(self, settings: NatsSinkConfig) -> None:
        self.settings = settings
        self._nc: Any = None
        self._js: Any = None

    async def _stream(self) -> Any:
        if self._nc is not None and self._nc.is_connected:
            return self._js
        await self.close()
        # No reconnecting inside the client: a lost server fails the attempt, and the sink's own
        # back-off decides when to try again.
        self._nc = await nats.connect(self.settings.url, allow_reconnect=False, connect_timeout=5)
        self._js = self._nc.jetstream()
        if self.settings.create_stream:
            try:
                await self._js.stream_info(self.settings.stream)
            except NotFoundError:
                await self._js.add_stream(name=self.settings.stream, subjects=[self.settings.subject])
        return self._js

    async def deliver(self, batch: Batch) -> None:
        js = await self._stream()
        for reading in batch.readings:
            await js.publish(
                self.settings.subject,
                orjson.dumps(reading),
                stream=self.settings.stream,
                headers={"Nats-Msg-Id": f"reading-{reading['reading_id']}", "Meter-Gateway-Batch": batch.id},
            )

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc, self._js = self._nc, None, None
            try:
                await nc.close()
            except Exception:  # closing a connection that is already gone
                pass
