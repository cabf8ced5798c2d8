"""The NATS JetStream sink against a real nats-server (started here with -js and a store of its own):
batches billing committed are published reading by reading; a durable consumer that dies with a
message unacknowledged and comes back gets every reading exactly once, also across a restart of
the server, during which the sink fails, says so, and then catches up. Both databases."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import orjson
import pytest
from nats.js.api import ConsumerConfig

from adapters.billing.sinks.config import NatsSinkConfig
from tests.adapters.billing.rigs import gateway_with, push_readings, sla, until
from tests.conftest import BILLING_TOKEN, FakeClock, Running

STREAM = "TEST_READINGS"
SUBJECT = "test.readings"


@dataclass
class NatsServer:
    port: int
    store: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.process = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("nats-server exited") from None
                import time

                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = NatsServer(port, tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def running(
    nats_server: NatsServer, db_url: str, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Running]:
    sink = NatsSinkConfig(
        enabled=True,
        url=nats_server.url,
        stream=STREAM,
        subject=SUBJECT,
        interval_seconds=0.05,
        timeout_seconds=2,
        retry_initial_seconds=0.05,
        retry_max_seconds=0.3,
    )
    async with gateway_with(db_url, tmp_path, clock, {"nats": sink}) as gw:
        yield gw


async def _commit(running: Running, limit: int) -> list[int]:
    """Billing leases and commits a batch through the pull API; the reading ids in it."""
    status, lease = await running.post("/api/v1/billing/batches", {"limit": limit}, token=BILLING_TOKEN)
    assert status == 201 and isinstance(lease, dict)
    status, _ = await running.post(f"/api/v1/billing/batches/{lease['batch_id']}/commit", token=BILLING_TOKEN)
    assert status == 200
    return [r["reading_id"] for r in lease["readings"]]


async def _consume(url: str, want: int, leave_unacked: bool = False) -> list[int]:
    """A consumer of the retailer's: reads with its durable consumer, acknowledging what it has
    processed; with `leave_unacked` it dies holding the last message it fetched, unacknowledged."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            SUBJECT, durable="crm", stream=STREAM, config=ConsumerConfig(ack_wait=1.0)
        )
        processed: list[int] = []
        deadline = asyncio.get_running_loop().time() + 20
        while len(processed) < want:
            assert asyncio.get_running_loop().time() < deadline, processed
            try:
                msgs = await sub.fetch(1, timeout=1)
            except TimeoutError:
                continue
            for msg in msgs:
                assert msg.headers and msg.headers["Nats-Msg-Id"].startswith("reading-")
                reading = orjson.loads(msg.data)
                if leave_unacked and len(processed) == want - 1:
                    return processed  # dies before acknowledging this one
                await msg.ack_sync()
                processed.append(reading["reading_id"])
        return processed
    finally:
        await nc.close()


async def test_a_restarting_consumer_gets_every_committed_reading_once(
    running: Running, nats_server: NatsServer
) -> None:
    ids = await push_readings(running, 8)
    first = await _commit(running, 5)

    async def copied() -> bool:
        sink = (await sla(running))["sinks"][0]
        return sink["pending"] == 0 and sink["last_delivered_at"] is not None

    await until(copied)
    print("DBG", await sla(running))
    processed = await _consume(nats_server.url, 4, leave_unacked=True)
    assert len(processed) == 3

    # The server goes away: the sink fails on the next committed batch and says so.
    nats_server.stop()
    second = await _commit(running, 10)

    async def failing() -> bool:
        return (await sla(running))["sinks"][0]["failing"] is not None

    await until(failing)
    status, health = await running.get("/healthz")
    assert status == 200 and isinstance(health, dict)
    assert health["checks"]["sink:nats"]["status"] == "degraded"
    assert (await sla(running))["sinks"][0]["pending"] == len(second)

    nats_server.start()  # the same store: the stream and the consumer's position are kept
    await until(copied)
    sink = (await sla(running))["sinks"][0]
    assert sink["failing"] is None and sink["role"] == "copy"

    # The consumer comes back: the message it held is delivered again, then the rest; each once.
    processed += await _consume(nats_server.url, len(first) + len(second) - len(processed))
    assert sorted(processed) == sorted(first + second) == sorted(ids)
