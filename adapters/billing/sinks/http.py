"""`[sinks.http]`: each batch POSTed to the billing system as `{"batch_id", "readings"}` (the shape
of the pull API's lease), with `Idempotency-Key: <batch id>`; any 2xx answer acknowledges it.
Anything else (another status, a refused connection, no answer in time) is a failure, and the
same batch is offered again under the same key (gateway/billing_delivery.py)."""

from __future__ import annotations

import aiohttp
import orjson

from adapters.billing.sinks.config import HttpSinkConfig
from gateway.billing_delivery import Batch

MAX_ERROR_BODY = 120  # characters of a refusal kept in the delivery record


class DeliveryRefused(RuntimeError):
    pass


class HttpSink:
    def __init__(self, settings: HttpSinkConfig) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, batch: Batch) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Content-Type": "application/json", "Idempotency-Key": batch.id}
        if self.settings.token:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        body = orjson.dumps({"batch_id": batch.id, "readings": batch.readings})
        async with self._session.post(self.settings.url, data=body, headers=headers) as resp:
            if 200 <= resp.status < 300:
                return
            text = (await resp.content.read(MAX_ERROR_BODY)).decode("utf-8", "replace")
            raise DeliveryRefused(f"HTTP {resp.status}: {text}".strip())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
