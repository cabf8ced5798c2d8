"""The poller inside `meter-gateway run`: readings through the intake, /healthz and /metrics,
and several gateway processes sharing the buses through leases in the database."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from adapters.meters.poller import ModbusPoller
from adapters.meters.store import claim_lease, lease_holders
from gateway.service import Gateway
from gateway.store.database import create_engine
from gateway.store.schema import inbound
from tests.adapters.meters.rig import bus_config, meter, registry_file, tcp_meters, until
from tests.conftest import make_config

DEMO_REGISTRY = Path(__file__).resolve().parents[3] / "gateway" / "demo" / "registry.csv"


class RealClock:
    """Moves with real time from a fixed start inside the acceptance window."""

    def __init__(self) -> None:
        self.start = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
        self.t0 = time.monotonic()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.t0)


def poller_of(gateway: Gateway) -> ModbusPoller:
    for task in gateway.background:
        owner = getattr(task, "__self__", None)
        if isinstance(owner, ModbusPoller):
            return owner
    raise AssertionError("the modbus poller is not installed")


async def modbus_rows(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).where(inbound.c.channel == "modbus"))).scalar_one()
            )
    finally:
        await engine.dispose()


async def test_run_polls_and_reports_in_healthz_and_metrics(db_url: str, tmp_path: Path) -> None:
    good = meter("eastron_sdm120", 1, import_total=100, serial=11111111)
    silent = meter("eastron_sdm630", 2, import_total=200, serial=11111116)
    silent.fault = "silent"
    async with tcp_meters(good, silent) as sim:
        bus = bus_config(
            "shop-floor",
            "tcp",
            [
                {"unit": 1, "serial": "MB-1", "profile": "eastron_sdm120"},
                {"unit": 2, "serial": "MB-6", "profile": "eastron_sdm630"},
            ],
            host="127.0.0.1",
            port=sim.port,
            interval_seconds=0.2,
            latency_ms=20,
        )
        config = make_config(
            db_url,
            tmp_path,
            registry={"csv": str(registry_file(tmp_path))},
            modbus={"buses": [bus], "lease_seconds": 3},
        )
        gateway = Gateway(config, clock=RealClock())
        await gateway.start()
        try:
            poller = poller_of(gateway)
            await until(lambda: poller.workers.get("shop-floor") is not None)
            worker = poller.workers["shop-floor"]
            # `polls` counts a poll when it starts and one meter's polls run one after another:
            # a fourth has started, so three readings have been handed to the intake.
            await until(lambda: worker.meters[0].polls >= 4 and worker.meters[1].errors["timeout"] >= 1)
            async with aiohttp.ClientSession() as http:
                base = f"http://127.0.0.1:{gateway.port}"
                async with http.get(base + "/healthz") as resp:
                    assert resp.status == 200
                    health: Any = await resp.json()
                async with http.get(base + "/metrics") as resp:
                    metrics = await resp.text()
            probe = health["checks"]["modbus"]
            assert probe["status"] == "degraded"
            meters = probe["buses"]["shop-floor"]["meters"]
            assert meters[f"127.0.0.1:{sim.port}/1"]["status"] == "ok"
            assert meters[f"127.0.0.1:{sim.port}/1"]["last_verdict"] == "accepted"
            assert meters[f"127.0.0.1:{sim.port}/2"]["status"] == "failing"
            assert meters[f"127.0.0.1:{sim.port}/2"]["errors"]["timeout"] >= 1
            assert (
                f'gateway_modbus_errors_total{{bus="shop-floor",kind="timeout",meter="127.0.0.1:{sim.port}/2"}}'
                in metrics
            )
            assert 'gateway_verdicts_total{channel="modbus",status="accepted"}' in metrics
            assert 'gateway_modbus_bus_polled{bus="shop-floor"} 1.0' in metrics
        finally:
            await gateway.stop()
        assert await modbus_rows(db_url) >= 3


async def test_install_does_nothing_without_buses(db_url: str, tmp_path: Path) -> None:
    gateway = Gateway(make_config(db_url, tmp_path))
    gateway.build_app()
    assert "modbus" not in gateway.health_probes
    assert not any(isinstance(getattr(t, "__self__", None), ModbusPoller) for t in gateway.background)
    await gateway.engine.dispose()


async def test_lease_is_claimed_renewed_and_taken_over_after_expiry(db_url: str, tmp_path: Path) -> None:
    engine = create_engine(db_url)
    try:
        from gateway.store.migrate import upgrade

        await upgrade(engine)
        now = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
        assert await claim_lease(engine, "b1", "proc-a", now, 30)
        assert not await claim_lease(engine, "b1", "proc-b", now + timedelta(seconds=10), 30)
        assert await claim_lease(engine, "b1", "proc-a", now + timedelta(seconds=20), 30)  # renewed
        assert not await claim_lease(engine, "b1", "proc-b", now + timedelta(seconds=40), 30)
        assert await claim_lease(engine, "b1", "proc-b", now + timedelta(seconds=51), 30)  # a expired
        holders = await lease_holders(engine)
        assert holders["b1"][0] == "proc-b"
    finally:
        await engine.dispose()


@pytest.fixture
async def two_buses() -> AsyncIterator[tuple[Any, Any, list[Any]]]:
    m1 = meter("eastron_sdm120", 1, import_total=100, serial=11111111)
    m2 = meter("eastron_sdm630", 2, import_total=200, serial=11111116)
    async with tcp_meters(m1) as s1, tcp_meters(m2) as s2:
        buses = [
            bus_config(
                "east",
                "tcp",
                [{"unit": 1, "serial": "MB-1", "profile": "eastron_sdm120"}],
                host="127.0.0.1",
                port=s1.port,
                interval_seconds=0.1,
            ),
            bus_config(
                "west",
                "tcp",
                [{"unit": 2, "serial": "MB-6", "profile": "eastron_sdm630"}],
                host="127.0.0.1",
                port=s2.port,
                interval_seconds=0.1,
            ),
        ]
        yield m1, m2, buses


async def test_two_gateways_share_the_buses_without_polling_a_meter_twice(
    db_url: str, tmp_path: Path, two_buses: tuple[Any, Any, list[Any]]
) -> None:
    m1, m2, buses = two_buses
    clock = RealClock()
    gateways = []
    for name in ("a", "b"):
        config = make_config(
            db_url,
            tmp_path / name,
            registry={"csv": str(registry_file(tmp_path / name))},
            modbus={"buses": buses, "lease_seconds": 1.5},
        )
        gateways.append(Gateway(config, clock=clock))
    (tmp_path / "a").mkdir(exist_ok=True)
    for gw in gateways:
        await gw.start()
    try:
        pollers = [poller_of(gw) for gw in gateways]
        await until(lambda: all(any(bus.name in p.workers for p in pollers) for bus in buses))
        await until(lambda: m1.reads >= 6 and m2.reads >= 6)
        # every bus is polled by exactly one of the two processes
        for bus in buses:
            assert sum(bus.name in p.workers for p in pollers) == 1
        holders = await lease_holders(gateways[0].engine)
        assert {holders[b.name][0] for b in buses} <= {p.holder for p in pollers}
        # every request a meter answered came from the one process holding its bus
        for sim_meter, bus in ((m1, buses[0]), (m2, buses[1])):
            sent = sum(
                link.stats.requests
                for p in pollers
                if bus.name in p.workers
                for link in p.workers[bus.name].links.values()
            )
            assert sent - 1 <= sim_meter.reads <= sent
        # the process holding "east" stops: the other one takes the bus over
        east_holder = next(i for i, p in enumerate(pollers) if "east" in p.workers)
        other = pollers[1 - east_holder]
        await gateways.pop(east_holder).stop()
        before = m1.reads
        await until(lambda: "east" in other.workers and "west" in other.workers, within=5)
        await until(lambda: m1.reads > before + 2, within=5)
    finally:
        for gw in gateways:  # those still running
            await gw.stop()


async def test_demo_meters_are_polled_and_booked(db_url: str, tmp_path: Path) -> None:
    from adapters.meters.config import ModbusConfig
    from adapters.meters.simulator import SimulatedBus, demo_meters, demo_modbus_config

    sim = SimulatedBus(demo_meters())
    port = await sim.start_tcp()
    try:
        modbus = demo_modbus_config(ModbusConfig(), port)
        bus = modbus.buses[0].model_copy(update={"interval_seconds": 0.2})
        registry = DEMO_REGISTRY
        config = make_config(
            db_url,
            tmp_path,
            registry={"csv": str(registry)},
            modbus={"buses": [bus], "lease_seconds": 3},
        )
        gateway = Gateway(config, clock=RealClock())
        await gateway.start()
        try:
            poller = poller_of(gateway)
            await until(lambda: "demo-tcp" in poller.workers)
            worker = poller.workers["demo-tcp"]
            await until(lambda: all(m.last_verdict == "accepted" for m in worker.meters))
            assert [m.serial for m in worker.meters] == ["SIM-0001", "SIM-0002", "SIM-0003"]
            detected = worker.meters[2].profile
            assert detected is not None and detected.id == "abb_b23"  # SIM-0003 has no profile configured
        finally:
            await gateway.stop()
    finally:
        await sim.stop()
