"""What billing receives from a polled bus (`billing = every_poll | daily | period`), the rest kept as
interval data at most one point per `intervals_minutes`, remembered across a restart, and listed by
`GET /api/v1/meters/{serial}/intervals` (billing token), the registry's ratio applied."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from adapters.meters import intervals
from adapters.meters.poller import BusWorker
from adapters.meters.simulator_mercury import SimulatedMercuryLine, SimulatedMercuryMeter
from adapters.meters.tables import meter_intervals
from gateway.store.schema import meters, readings
from tests.adapters.meters.rig import Rig, bus_config, rig
from tests.conftest import BILLING_TOKEN, FakeClock

MSK = timedelta(hours=3)  # calendar.timezone, Europe/Moscow


def local(text: str) -> datetime:
    """A Moscow wall-clock time as the UTC moment the clock is set to."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC) - MSK


@pytest.fixture
async def line() -> AsyncIterator[SimulatedMercuryLine]:
    """Two Mercury meters behind one converter: HG-1 (100/5 A transformers, T1;T2) and HG-2 (T)."""
    hg1 = SimulatedMercuryMeter(7, serial="23400001")
    hg2 = SimulatedMercuryMeter(8, serial="23400002")
    hg1.set_kwh(1, "100.5")
    hg1.set_kwh(2, "50.25")
    hg2.set_kwh(0, "1000")
    sim = SimulatedMercuryLine([hg1, hg2])
    await sim.start_tcp()
    yield sim
    await sim.stop()


def bus(line: SimulatedMercuryLine, **kw: Any) -> Any:
    meters_ = [
        {"unit": 7, "serial": "HG-1", "profile": "mercury_234"},
        {"unit": 8, "serial": "HG-2", "profile": "mercury_230"},
    ]
    return bus_config("sel", "tcp", meters_, host="127.0.0.1", port=line.port, latency_ms=30, **kw)


async def billed(r: Rig, serial: str) -> list[tuple[datetime, str, str]]:
    """(taken_at, zone, value) of the readings billing got of a meter."""
    async with r.gateway.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(readings.c.taken_at, readings.c.zone, readings.c.value)
                .join(meters, meters.c.id == readings.c.meter_id)
                .where(meters.c.serial == serial)
                .order_by(readings.c.id)
            )
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


async def points(r: Rig, serial: str) -> list[tuple[datetime, str, str, str | None, str | None]]:
    """(at, zone, value, raw_value, status) of a meter's interval data."""
    async with r.gateway.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    meter_intervals.c.at,
                    meter_intervals.c.zone,
                    meter_intervals.c.value,
                    meter_intervals.c.raw_value,
                    meter_intervals.c.status,
                )
                .where(meter_intervals.c.meter_serial == serial)
                .order_by(meter_intervals.c.at, meter_intervals.c.zone)
            )
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


async def poll_at(r: Rig, unit: int, moment: datetime) -> Any:
    r.clock.now = moment
    return await r.worker.poll_meter(r.meter(unit))


async def test_every_poll_goes_to_billing_and_nothing_is_kept_beside(
    db_url: str, tmp_path: Path, clock: FakeClock, line: SimulatedMercuryLine
) -> None:
    async with rig(db_url, tmp_path, clock, bus(line)) as r:
        for minutes in (0, 10, 20):
            assert (await poll_at(r, 8, local("2026-11-17T12:00") + timedelta(minutes=minutes))) is not None
        assert len(await billed(r, "HG-2")) == 3
        assert await points(r, "HG-2") == []


async def test_daily_sends_one_reading_a_day_and_keeps_half_hours(
    db_url: str, tmp_path: Path, clock: FakeClock, line: SimulatedMercuryLine
) -> None:
    async with rig(db_url, tmp_path, clock, bus(line, billing="daily", billing_time="00:00")) as r:
        hg2 = line.meters[1]
        # the first poll of the day goes to billing; later ones are interval data, one per half hour
        assert (await poll_at(r, 8, local("2026-11-17T12:00"))).status.value == "accepted"
        for at, kwh in (("12:10", "1000.2"), ("12:29", "1000.4"), ("12:31", "1000.5"), ("13:05", "1001")):
            hg2.set_kwh(0, kwh)
            assert await poll_at(r, 8, local(f"2026-11-17T{at}")) is None
            assert r.meter(8).status == "ok"
        assert r.poller.metrics.polls.labels("sel", "interval")._value.get() == 4
        # past local midnight: the day's reading
        hg2.set_kwh(0, "1010")
        assert (await poll_at(r, 8, local("2026-11-18T00:02"))).status.value == "accepted"
        assert await billed(r, "HG-2") == [
            (local("2026-11-17T12:00"), "T", "1000.000"),
            (local("2026-11-18T00:02"), "T", "1010.000"),
        ]
        # 12:10 and 12:29 fall in the half hour the billed 12:00 reading already stands for
        assert await points(r, "HG-2") == [
            (local("2026-11-17T12:00"), "T", "1000.000", None, "billed"),
            (local("2026-11-17T12:31"), "T", "1000.500", None, None),
            (local("2026-11-17T13:05"), "T", "1001.000", None, None),
            (local("2026-11-18T00:02"), "T", "1010.000", None, "billed"),
        ]
        # a restarted worker knows today is billed and which half hour is kept
        restarted = BusWorker(r.poller, r.worker.bus)
        await restarted.restore()
        r.worker = restarted
        assert await poll_at(r, 8, local("2026-11-18T00:20")) is None
        assert await poll_at(r, 8, local("2026-11-18T00:40")) is None
        assert len(await billed(r, "HG-2")) == 2
        assert [p[0] for p in await points(r, "HG-2")][-2:] == [
            local("2026-11-18T00:02"),
            local("2026-11-18T00:40"),
        ]


async def test_period_sends_one_reading_when_the_window_opens(
    db_url: str, tmp_path: Path, clock: FakeClock, line: SimulatedMercuryLine
) -> None:
    # The default calendar's window is the 15th to the 25th; readings from the 26th count for the next month.
    selection = bus(line, billing="period", billing_time="06:00", intervals_minutes=0)
    async with rig(db_url, tmp_path, clock, selection) as r:
        assert (await poll_at(r, 8, local("2026-11-17T12:00"))).status.value == "accepted"  # November's
        assert await poll_at(r, 8, local("2026-11-24T12:00")) is None
        assert await poll_at(r, 8, local("2026-11-26T12:00")) is None  # December's, its window not open
        assert await poll_at(r, 8, local("2026-12-15T05:59")) is None
        assert (await poll_at(r, 8, local("2026-12-15T06:01"))).status.value == "accepted"
        assert await poll_at(r, 8, local("2026-12-16T06:01")) is None
        rows = await billed(r, "HG-2")
        assert [at for at, _, _ in rows] == [local("2026-11-17T12:00"), local("2026-12-15T06:01")]
        async with r.gateway.engine.connect() as conn:
            periods = (await conn.execute(select(readings.c.period).order_by(readings.c.id))).scalars().all()
        assert periods == ["2026-11", "2026-12"]
        # intervals_minutes = 0: only the billed points are kept (what a restart needs)
        assert [p[4] for p in await points(r, "HG-2")] == ["billed", "billed"]


async def test_the_api_lists_interval_data_with_the_ratio_applied(
    db_url: str, tmp_path: Path, clock: FakeClock, line: SimulatedMercuryLine
) -> None:
    async with rig(db_url, tmp_path, clock, bus(line, billing="daily", billing_time="00:00")) as r:
        hg1 = line.meters[0]
        assert (await poll_at(r, 7, local("2026-11-17T12:00"))).status.value == "accepted"
        hg1.set_kwh(1, "100.75")
        assert await poll_at(r, 7, local("2026-11-17T12:40")) is None
        base = f"http://127.0.0.1:{r.gateway.port}/api/v1/meters"
        headers = {"Authorization": f"Bearer {BILLING_TOKEN}"}
        async with aiohttp.ClientSession() as http:

            async def get(path: str, auth: bool = True) -> tuple[int, Any]:
                async with http.get(base + path, headers=headers if auth else {}) as resp:
                    return resp.status, await resp.json()

            status, body = await get("/HG-1/intervals?from=2026-11-17T00:00&to=2026-11-18T00:00")
            assert status == 200, body
            assert body["from"] == "2026-11-17T00:00:00+03:00" and body["more"] is False
            # the registry gives HG-1 100/5 A transformers: value = register x 20
            assert [
                (i["at"], i["zone"], i["value"], i["raw_value"], i["status"]) for i in body["intervals"]
            ] == [
                ("2026-11-17T09:00:00+00:00", "T1", "2010.000", "100.500", "billed"),
                ("2026-11-17T09:00:00+00:00", "T2", "1005.000", "50.250", "billed"),
                ("2026-11-17T09:40:00+00:00", "T1", "2015.000", "100.750", None),
                ("2026-11-17T09:40:00+00:00", "T2", "1005.000", "50.250", None),
            ]
            assert {i["kind"] for i in body["intervals"]} == {"register"}
            assert body["intervals"][0]["source"] == "modbus:sel:7"
            status, body = await get("/HG-1/intervals?from=2026-11-17T00:00&to=2026-11-18T00:00&limit=3")
            assert len(body["intervals"]) == 3 and body["more"] is True
            status, body = await get("/HG-1/intervals?from=2026-11-17T00:00&to=2026-11-18T00:00&kind=energy")
            assert body["intervals"] == []
            assert (await get("/HG-1/intervals", auth=False))[0] == 401
            assert (await get("/HG-1/intervals?from=2026-11-18T00:00&to=2026-11-17T00:00"))[0] == 400
            assert (await get("/HG-1/intervals?from=yesterday"))[0] == 400
            assert (await get("/HG-1/intervals?limit=0"))[0] == 400
            assert (await get("/HG-1/intervals?kind=power"))[0] == 400
            assert (await get("/" + "x" * 65 + "/intervals"))[0] == 404
            # the default range is the last 24 hours before now
            status, body = await get("/HG-1/intervals")
            assert status == 200 and len(body["intervals"]) == 4


async def test_storing_a_point_again_changes_nothing(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    from tests.conftest import make_config

    config = make_config(db_url, tmp_path)
    from gateway.store.database import create_engine

    engine = create_engine(config.database.url)
    try:
        at = datetime(2026, 11, 17, 10, tzinfo=UTC)

        def point(value: str, hour: int = 10) -> intervals.IntervalRow:
            return intervals.IntervalRow(
                "E-1", "T", "energy", at.replace(hour=hour), Decimal(value), "80020:test", start_at=at
            )

        async with engine.begin() as conn:
            assert await intervals.store_intervals(conn, [point("1.5"), point("2", 11)], clock()) == [
                "stored",
                "stored",
            ]
        async with engine.begin() as conn:
            assert await intervals.store_intervals(
                conn, [point("1.50"), point("3", 11), point("4", 12)], clock()
            ) == [
                "unchanged",
                "conflict",
                "stored",
            ]
        rows = await intervals.list_intervals(engine, "E-1", at, at + timedelta(days=1))
        assert [(r["at"][11:13], r["value"]) for r in rows] == [("10", "1.5"), ("11", "2"), ("12", "4")]
    finally:
        await engine.dispose()
