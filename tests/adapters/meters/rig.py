"""Helpers shared by the Modbus tests (no tests here): a gateway with a poller whose polls the
test drives one by one, simulated meters on pymodbus servers, and a socat serial line."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from adapters.meters.config import ModbusBusConfig, ModbusConfig
from adapters.meters.poller import BusWorker, MeterState, ModbusPoller, load_modbus_profiles
from adapters.meters.profiles import DEFAULT_DIR, Profile, load_profiles
from adapters.meters.simulator import SimulatedBus, SimulatedMeter
from adapters.meters.tables import modbus_events
from gateway.service import Gateway
from gateway.store.schema import accounts, meters, readings
from tests.conftest import FakeClock, make_config

PROFILES = load_profiles(DEFAULT_DIR)

# Meters of the Modbus tests: T, T1;T2 and T1;T2;T3 meters, and the serial numbers that the
# meters' serial-number registers report (a replacement meter is registered under its number).
REGISTRY = """account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address,ct_ratio,vt_ratio
3000001,MB-1,SDM120,T,6,,10,ул. Мира 1
3000002,MB-2,iEM3255,T1;T2,6,,10,ул. Мира 2
3000003,MB-3,B23,T1;T2;T3,6,,15,ул. Мира 3
3000004,MB-4,EM340,T,6,,10,ул. Мира 4
3000005,MB-5,WB-MAP3E,T,6,,10,ул. Мира 5
3000006,MB-6,SDM630,T,6,,10,ул. Мира 6
3000007,22222222,SDM120,T,6,,10,ул. Мира 1
3000008,40000001,B23,T1;T2;T3,6,,15,ул. Мира 8
3000009,CE-301,CE301,T1;T2,6,,15,ул. Мира 9
3000010,009217054009999,CE301,T1;T2,6,,15,ул. Мира 9
3000011,DL-1,СПОДЭС,T1;T2,6,,15,ул. Мира 11
3000012,04812399,СПОДЭС,T1;T2,6,,15,ул. Мира 11
3000013,HG-1,Меркурий 234,T1;T2,6,,60,ТП-3 ввод 1,100/5,
3000014,23400099,Меркурий 234,T1;T2,6,,60,ТП-3 ввод 1,100/5,
3000015,HG-2,Меркурий 230,T,6,,15,ул. Мира 15
3000016,M2-1,Меркурий 200,T1;T2,6,,10,ул. Мира 16
3000017,20000099,Меркурий 200,T1;T2,6,,10,ул. Мира 16
3000018,20000018,Меркурий 201,T,6,,10,ул. Мира 18
"""


def registry_file(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "modbus_registry.csv"
    path.write_text(REGISTRY, encoding="utf-8")
    return path


@dataclass
class Rig:
    gateway: Gateway
    poller: ModbusPoller
    worker: BusWorker
    clock: FakeClock

    def meter(self, unit: int) -> MeterState:
        return next(m for m in self.worker.meters if m.unit == unit)

    async def poll(self, unit: int, advance_hours: float = 1.0) -> Any:
        self.clock.advance(hours=advance_hours)
        return await self.worker.poll_meter(self.meter(unit))

    async def stored(self, serial: str) -> list[tuple[str, str, str]]:
        """(zone, value, verdict) of the meter's stored readings, oldest first."""
        async with self.gateway.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(readings.c.zone, readings.c.value, readings.c.verdict)
                    .join(meters, meters.c.id == readings.c.meter_id)
                    .where(meters.c.serial == serial)
                    .order_by(readings.c.id)
                )
            ).all()
        return [(r.zone, r.value, r.verdict) for r in rows]

    async def events(self) -> list[dict[str, Any]]:
        async with self.gateway.engine.connect() as conn:
            rows = (await conn.execute(select(modbus_events).order_by(modbus_events.c.id))).mappings()
            return [dict(r) for r in rows]

    async def account_of(self, serial: str) -> str:
        async with self.gateway.engine.connect() as conn:
            return str(
                (
                    await conn.execute(
                        select(accounts.c.number)
                        .join(meters, meters.c.account_id == accounts.c.id)
                        .where(meters.c.serial == serial)
                    )
                ).scalar_one()
            )


def bus_config(name: str, transport: str, meters_: list[dict[str, Any]], **kw: Any) -> ModbusBusConfig:
    data: dict[str, Any] = {
        "name": name,
        "transport": transport,
        "meters": meters_,
        "interval_seconds": 60,
        "backoff_initial_seconds": 0.2,
        "backoff_max_seconds": 2,
        "latency_ms": 150,
        **kw,
    }
    return ModbusBusConfig.model_validate(data)


@contextlib.asynccontextmanager
async def rig(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    bus: ModbusBusConfig,
    profiles_dir: str | None = None,
) -> AsyncIterator[Rig]:
    """A started gateway (modbus not configured, so nothing polls by itself) and a worker for `bus`."""
    config = make_config(db_url, tmp_path, registry={"csv": str(registry_file(tmp_path))})
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    modbus = ModbusConfig(buses=[bus], profiles_dir=profiles_dir)
    poller = ModbusPoller(gateway, modbus, load_modbus_profiles(modbus))
    worker = BusWorker(poller, bus)
    await worker.restore()
    try:
        yield Rig(gateway, poller, worker, clock)
    finally:
        for link in worker.links.values():
            link.close()
        await gateway.stop()


@contextlib.asynccontextmanager
async def tcp_meters(*meters_: SimulatedMeter) -> AsyncIterator[SimulatedBus]:
    sim = SimulatedBus(meters_)
    await sim.start_tcp()
    try:
        yield sim
    finally:
        await sim.stop()


def meter(
    profile_id: str, unit: int, profiles: dict[str, Profile] | None = None, **values: Any
) -> SimulatedMeter:
    return SimulatedMeter((profiles or PROFILES)[profile_id], unit, dict(values))


@contextlib.contextmanager
def socat_pair(tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """A serial line: two pty ends linked by socat (tmp/a: the poller's, tmp/b: the meters')."""
    a, b = str(tmp_path / "tty_a"), str(tmp_path / "tty_b")
    proc = start_socat(a, b)
    try:
        yield a, b, proc
    finally:
        stop_socat(proc)


def start_socat(a: str, b: str) -> subprocess.Popen[bytes]:
    exe = shutil.which("socat")
    assert exe, "socat is needed (scripts/system-deps.sh installs it)"
    proc = subprocess.Popen(
        [exe, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        if Path(a).exists() and Path(b).exists():
            return proc
        import time

        time.sleep(0.01)
    proc.kill()
    raise AssertionError("socat did not create the pty pair")


def stop_socat(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def until(predicate: Any, within: float = 10.0, step: float = 0.02) -> None:
    """Wait until predicate() is true (a plain or async callable)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)


@contextlib.asynccontextmanager
async def demo_meter_polled(
    db_url: str, tmp_path: Path, line: Any, make_bus: Any
) -> AsyncIterator[tuple[Gateway, MeterState]]:
    """A demo's simulated meter on `line` behind a converter (`make_bus(port)` is the demo's bus
    for it), polled by a real gateway with the demo registry until its first reading is
    accepted: the gateway and the meter's state."""
    from tests.adapters.meters.test_service import DEMO_REGISTRY, RealClock, poller_of

    port = await line.start_tcp()
    try:
        bus = make_bus(port).model_copy(update={"interval_seconds": 0.2})
        config = make_config(
            db_url,
            tmp_path,
            registry={"csv": str(DEMO_REGISTRY)},
            modbus={"buses": [bus], "lease_seconds": 3},
        )
        gateway = Gateway(config, clock=RealClock())
        await gateway.start()
        try:
            poller = poller_of(gateway)
            await until(lambda: bus.name in poller.workers)
            meter = poller.workers[bus.name].meters[0]
            await until(lambda: meter.last_verdict == "accepted", within=10)
            yield gateway, meter
        finally:
            await gateway.stop()
    finally:
        await line.stop()
