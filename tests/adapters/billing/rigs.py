"""Rigs for the billing sinks' tests: a gateway with `[sinks]` set, readings pushed, waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from gateway.service import Gateway
from tests.conftest import BILLING_TOKEN, FakeClock, Running, make_config, stored

SINGLE_RATE = ("M-1", "M-4A", "M-4B", "M-5", "M-6")


@asynccontextmanager
async def gateway_with(
    db_url: str, tmp_path: Path, clock: FakeClock, sinks: dict[str, object]
) -> AsyncIterator[Running]:
    """A real gateway on a free port with the `[sinks]` sub-sections given (name -> its model)."""
    gateway = Gateway(make_config(db_url, tmp_path, sinks=sinks), clock=clock)
    await gateway.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Running(gateway, f"http://127.0.0.1:{gateway.port}", http, clock)
    finally:
        await gateway.stop()


async def push_readings(running: Running, count: int, first: int = 0) -> list[int]:
    """`count` accepted device readings over the five single-rate meters; their reading ids."""
    now = running.clock.now
    items = []
    for i in range(first, first + count):
        step = i // len(SINGLE_RATE)
        items.append(
            {
                "id": f"sink-{i}",
                "meter": SINGLE_RATE[i % len(SINGLE_RATE)],
                "taken_at": (now - timedelta(hours=100 - step)).astimezone(UTC).isoformat(),
                "value": f"{1000 + step}",
            }
        )
    results = await running.push(*items)
    assert all(r["status"] == "accepted" for r in results), results
    return [stored(x) for r in results for x in r["readings"]]


async def sla(running: Running) -> dict[str, Any]:
    status, body = await running.get("/api/v1/billing/sla", token=BILLING_TOKEN)
    assert status == 200 and isinstance(body, dict), body
    return body


async def metric(running: Running, line_start: str) -> float:
    """The value of the first /metrics line starting with `line_start` (0 when absent)."""
    status, text = await running.get("/metrics")
    assert status == 200 and isinstance(text, str)
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    """Wait for `check()` to hold (the sinks work in the background)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)
