"""Modbus RTU over a real serial line: a socat pty pair, pymodbus' RTU server on one end with
simulated meters, the poller on the other. RTU framing and CRC are real; faults are made by
the server (wrong CRC, noise, silence, exception responses) and by pulling the line away."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.meters.modbus_link import LineTiming
from adapters.meters.simulator import SimulatedBus
from tests.adapters.meters.rig import bus_config, meter, rig, socat_pair, start_socat, stop_socat, until
from tests.conftest import FakeClock

BAUD = 19200


def rtu_bus(device: str, **kw: Any) -> Any:
    return bus_config(
        "line1",
        "rtu",
        [
            {"unit": 1, "serial": "MB-1", "profile": "eastron_sdm120"},
            {"unit": 2, "serial": "MB-2", "profile": "schneider_iem3255"},
            {"unit": 3, "serial": "MB-3", "profile": "abb_b23"},
        ],
        device=device,
        baudrate=BAUD,
        stopbits=2,  # 8N2: 11-bit characters like 8E1 (a pty takes no parity setting)
        **kw,
    )


def three_meters() -> list[Any]:
    return [
        meter("eastron_sdm120", 1, import_total=111.5, serial=11111111),
        meter(
            "schneider_iem3255", 2, import_t1=Decimal("221.5"), import_t2=Decimal("222.5"), serial=22222221
        ),
        meter(
            "abb_b23",
            3,
            import_t1=Decimal("331.01"),
            import_t2=Decimal("332.02"),
            import_t3=Decimal("333.03"),
            serial=33333331,
        ),
    ]


async def test_rtu_line_reads_every_meter_and_books_it(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    with socat_pair(tmp_path) as (a, b, _):
        sim = SimulatedBus(three_meters())
        await sim.start_rtu(b, baudrate=BAUD, stopbits=2)
        try:
            async with rig(db_url, tmp_path, clock, rtu_bus(a)) as r:
                for unit in (1, 2, 3):
                    verdict = await r.poll(unit, advance_hours=0.5)
                    assert verdict is not None and verdict.status.value == "accepted", (
                        unit,
                        r.meter(unit).health(),
                    )
                assert await r.stored("MB-1") == [("T", "111.5", "accepted")]
                assert await r.stored("MB-2") == [
                    ("T1", "221.500", "accepted"),
                    ("T2", "222.500", "accepted"),
                ]
                assert [v for _, v, _ in await r.stored("MB-3")] == ["331.01", "332.02", "333.03"]
                link = r.meter(1).link
                assert link.timing == LineTiming(BAUD, 8, "N", 2)
                assert link.stats.opened == 1
        finally:
            await sim.stop()


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("bad_crc", "crc"), ("garbage", "garbage"), ("silent", "timeout"), ("exception", "exception")],
)
async def test_rtu_faults_are_counted_per_meter(
    db_url: str, tmp_path: Path, clock: FakeClock, fault: str, kind: str
) -> None:
    meters = three_meters()
    with socat_pair(tmp_path) as (a, b, _):
        sim = SimulatedBus(meters)
        await sim.start_rtu(b, baudrate=BAUD, stopbits=2)
        try:
            async with rig(db_url, tmp_path, clock, rtu_bus(a, latency_ms=60)) as r:
                meters[1].fault = fault
                results = [await r.poll(unit, advance_hours=0.5) for unit in (1, 2, 3)]
                assert results[0].status.value == "accepted" and results[2].status.value == "accepted"
                assert results[1] is None
                health = r.worker.health()["meters"]
                assert health["2"]["errors"] == {kind: 1}
                assert health["2"]["status"] == "failing"
                assert health["1"]["errors"] == {} and health["3"]["errors"] == {}
                assert r.poller.metrics.errors.labels("line1", "2", kind)._value.get() == 1
                # the line stays open: only one of its meters fails
                assert r.meter(2).link.stats.reopened == 0
                meters[1].fault = None
                assert (await r.poll(2, advance_hours=0.5)).status.value == "accepted"
        finally:
            await sim.stop()


async def test_rtu_requests_are_sequential_with_the_silent_interval(
    db_url: str, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[float, bool]] = []
    with socat_pair(tmp_path) as (a, b, _):
        sim = SimulatedBus(three_meters())
        plain = sim._trace

        def trace(sending: bool, data: bytes) -> bytes:
            events.append((time.monotonic(), sending))
            return plain(sending, data)

        monkeypatch.setattr(sim, "_trace", trace)
        await sim.start_rtu(b, baudrate=BAUD, stopbits=2)
        try:
            bus = rtu_bus(a, interval_seconds=0.05)
            async with rig(db_url, tmp_path, clock, bus) as r:
                task = asyncio.create_task(r.worker.run())
                await until(lambda: sum(1 for _, s in events if s) >= 30)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        finally:
            await sim.stop()
    # collapse partial reads of one request into one "request arrived" event
    arrivals: list[tuple[float, bool]] = []
    for at, sending in events:
        if arrivals and not sending and not arrivals[-1][1]:
            continue
        arrivals.append((at, sending))
    # request, reply, request, reply...: never a second request before the reply
    kinds = [s for _, s in arrivals]
    assert kinds[: len(kinds) // 2 * 2] == [False, True] * (len(kinds) // 2)
    gaps = [arrivals[i + 1][0] - arrivals[i][0] for i in range(1, len(arrivals) - 1, 2)]
    silent = LineTiming(BAUD, 8, "N", 2).silent_interval
    assert min(gaps) >= 0.8 * silent, (min(gaps), silent)


async def test_unplugged_adapter_recovers_by_itself(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    a, b = str(tmp_path / "tty_a"), str(tmp_path / "tty_b")
    proc = start_socat(a, b)
    sim = SimulatedBus(three_meters())
    await sim.start_rtu(b, baudrate=BAUD, stopbits=2)
    bus = rtu_bus(
        a, interval_seconds=0.1, backoff_initial_seconds=0.1, backoff_max_seconds=0.3, latency_ms=30
    )
    try:
        async with rig(db_url, tmp_path, clock, bus) as r:
            worker = r.worker
            task = asyncio.create_task(worker.run())
            await until(lambda: all(m.status == "ok" for m in worker.meters))
            # the USB adapter is pulled out: the device disappears
            await sim.stop()
            stop_socat(proc)
            await until(lambda: all(m.status == "failing" for m in worker.meters))
            link = worker.meters[0].link
            await until(lambda: not link.is_open)
            # the health probe still answers, and says what an operator must see: every meter failing,
            # the line closed
            probe = worker.health()
            assert probe["meters_failing"] == len(worker.meters) == 3
            assert probe["links"] and not any(info["open"] for info in probe["links"].values())
            # ...and plugged back in: the same device name appears again
            proc = start_socat(a, b)
            sim = SimulatedBus(three_meters())
            await sim.start_rtu(b, baudrate=BAUD, stopbits=2)
            await until(lambda: all(m.status == "ok" for m in worker.meters), within=15)
            assert link.is_open and link.stats.opened >= 2
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await sim.stop()
        stop_socat(proc)
