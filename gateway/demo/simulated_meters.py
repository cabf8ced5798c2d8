"""Simulated smart meters that push their counters through the real device route over HTTP."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from decimal import Decimal

import aiohttp

from gateway.service import Gateway

log = logging.getLogger(__name__)

SIMULATED = {"SIM-0001": ("T1", "T2"), "SIM-0002": ("T1", "T2"), "SIM-0003": ("T1", "T2", "T3")}


async def push_simulated_readings(gateway: Gateway) -> None:
    """Every interval, each simulated meter's zones grow a little and are pushed as a batch."""
    token = gateway.config.devices.tokens[0]
    interval = gateway.config.demo.push_interval_seconds
    meters = dict(list(SIMULATED.items())[: gateway.config.demo.simulated_meters])
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    url = f"http://{gateway.config.http.host}:{gateway.port}/api/v1/readings"
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {token}", "X-Device-Id": "demo-sim"}
    ) as http:
        while True:
            now = datetime.now(UTC).replace(microsecond=0)
            items = []
            for serial, zones in meters.items():
                values = {z: str(_counter(serial, i, now, epoch)) for i, z in enumerate(zones)}
                items.append(
                    {
                        "id": f"{serial}-{now.isoformat()}",
                        "meter": serial,
                        "taken_at": now.isoformat(),
                        "values": values,
                    }
                )
            try:
                async with http.post(url, json={"readings": items}) as resp:
                    body = await resp.json()
                    log.info(
                        "simulated meters pushed %d readings: %d accepted",
                        len(items),
                        body.get("accepted", 0),
                    )
            except aiohttp.ClientError as exc:
                log.warning("simulated meters could not push: %s", exc)
            await asyncio.sleep(interval)


def _counter(serial: str, zone_index: int, now: datetime, epoch: datetime) -> Decimal:
    """A counter that only grows, even across demo restarts: a steady load of a few hundred watts."""
    watts = 150 + 90 * (int(serial[-1]) + zone_index)
    kwh = Decimal(watts) * Decimal((now - epoch).total_seconds()) / Decimal(3_600_000)
    return (Decimal(1000 * (zone_index + 1)) + kwh).quantize(Decimal("0.01"))
