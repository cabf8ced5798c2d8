"""The SQLite writer process and the registry rows it keeps: what a sender sees when the
registry changes under a running gateway, or when the writer process is killed."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.intake import Intake
from gateway.model import Channel, Status, Submission
from gateway.registry import import_registry
from tests.conftest import REGISTRY_CSV, FakeClock


def device(clock: FakeClock, serial: str, value: str) -> Submission:
    return Submission(Channel.DEVICE, clock(), "head-end-1", values={"T": value}, meter_serial=serial)


async def test_registry_import_reaches_a_running_intake(
    intake: Intake, engine: AsyncEngine, tmp_path: Path, clock: FakeClock
) -> None:
    assert (await intake.submit(device(clock, "M-6", "100"))).status is Status.ACCEPTED
    unknown = await intake.submit(device(clock, "M-7", "50"))
    assert unknown.status is Status.REJECTED and unknown.reasons[0].code == "unknown_meter"
    # The retailer takes M-6 off the books and adds M-7, while the gateway runs.
    changed = tmp_path / "changed.csv"
    changed.write_text(
        REGISTRY_CSV.replace("account,", "active,account,", 1)
        .replace("\n1000", "\n1,1000")
        .replace("1,1000006,M-6", "0,1000006,M-6")
        + "1,1000007,M-7,Меркурий 201,T,6,,10,ул. Ленина 1-7\n",
        encoding="utf-8",
    )
    report = await import_registry(engine, changed)
    assert report.added == 1 and report.changed == 1
    clock.advance(hours=1)
    gone = await intake.submit(device(clock, "M-6", "101"))
    assert gone.status is Status.REJECTED and gone.reasons[0].code == "inactive_meter"
    assert "снят с учёта" in gone.reasons[0].message_ru
    assert (await intake.submit(device(clock, "M-7", "50"))).status is Status.ACCEPTED


async def test_sqlite_times_are_stored_in_one_text_form(
    intake: Intake, db_url: str, clock: FakeClock
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL stores timestamptz")
    assert (await intake.submit(device(clock, "M-1", "100"))).accepted
    # SQLite compares times as text: the writer must store exactly what SQLAlchemy would.
    form = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")
    with sqlite3.connect(db_url.split("///", 1)[1]) as raw:
        (received,) = raw.execute("SELECT received_at FROM inbound").fetchone()
        taken, got, due = raw.execute("SELECT taken_at, received_at, due_at FROM readings").fetchone()
        last, dev = raw.execute(
            "SELECT last_taken_at, dev_taken_at FROM meter_state WHERE meter_id = 1"
        ).fetchone()
    for text in (received, taken, got, due, last, dev):
        assert form.match(text), text
    assert received == clock().replace(tzinfo=None).isoformat(" ", "microseconds")


async def test_a_killed_writer_process_is_replaced(intake: Intake, db_url: str, clock: FakeClock) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL is written from the gateway's own process")
    assert (await intake.submit(device(clock, "M-1", "100"))).accepted
    process = intake._process
    assert process is not None and process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    while process.alive():
        pass
    clock.advance(hours=1)
    after = await intake.submit(device(clock, "M-1", "101"))
    assert after.status is Status.ACCEPTED and after.readings[0].value is not None
    assert intake._process is not None and intake._process.pid != process.pid


async def test_migration_0007_brings_sqlite_times_to_one_form(tmp_path: Path) -> None:
    """Rows written before 0007 by the SQLite intake path carried '+00:00' (and no microseconds
    when there were none); after the upgrade every time is in SQLAlchemy's form and reads back
    the same."""
    from gateway.store.database import create_engine
    from gateway.store.migrate import upgrade

    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(engine, "0006")
        with sqlite3.connect(path) as raw:
            raw.execute(
                "INSERT INTO accounts (id, number, address, updated_at) VALUES (1, '1', '', '2026-11-01 00:00:00.000000')"
            )
            raw.execute(
                "INSERT INTO meters (id, account_id, serial, model, zones, digits, active, updated_at)"
                " VALUES (1, 1, 'M', '', 'T', 6, 1, '2026-11-01 00:00:00.000000')"
            )
            raw.execute(
                "INSERT INTO inbound (id, channel, received_at, source, payload, response)"
                " VALUES (1, 'device', '2026-11-24 04:03:54.214673+00:00', 'd', '{}', '{}')"
            )
            raw.execute(
                "INSERT INTO readings (id, inbound_id, account_id, meter_id, zone, value, taken_at, received_at,"
                " channel, source, period, verdict, reasons, due_at) VALUES (1, 1, 1, 1, 'T', '1',"
                " '2026-11-24 04:00:00+00:00', '2026-11-24 04:03:54.214673+00:00', 'device', 'd', '2026-11',"
                " 'accepted', '[]', '2026-11-25 21:00:00+00:00')"
            )
            raw.execute(
                "INSERT INTO meter_state (meter_id, zone, last_value, last_taken_at, total_kwh, total_days,"
                " dev_value, dev_taken_at) VALUES (1, 'T', '1', '2026-11-24 04:00:00+00:00', '0', '0', '1',"
                " '2026-11-24 04:00:00+00:00')"
            )
        await upgrade(engine)
        with sqlite3.connect(path) as raw:
            assert raw.execute("SELECT received_at FROM inbound").fetchone() == (
                "2026-11-24 04:03:54.214673",
            )
            assert raw.execute("SELECT taken_at, received_at, due_at FROM readings").fetchone() == (
                "2026-11-24 04:00:00.000000",
                "2026-11-24 04:03:54.214673",
                "2026-11-25 21:00:00.000000",
            )
            assert raw.execute(
                "SELECT last_taken_at, dev_taken_at, res_taken_at FROM meter_state"
            ).fetchone() == (
                "2026-11-24 04:00:00.000000",
                "2026-11-24 04:00:00.000000",
                None,
            )
            assert raw.execute("SELECT version FROM registry_version").fetchall() == [(0,)]
    finally:
        await engine.dispose()


async def test_a_message_sent_twice_at_once_is_decided_once(
    intake: Intake, engine: AsyncEngine, clock: FakeClock
) -> None:
    """Senders retry while their first attempt is still being decided: on PostgreSQL two groups
    are decided at a time, on SQLite up to four are queued to the writer. Each message is still
    stored once, both attempts get one answer, and one meter's readings are decided in order."""
    import asyncio
    from datetime import timedelta

    from sqlalchemy import func, select

    from gateway.store.schema import inbound, readings

    start = clock() - timedelta(hours=12)

    def reading(serial: str, i: int) -> Submission:
        return Submission(
            Channel.DEVICE,
            clock(),
            "head-end-1",
            values={"T": str(100 + i)},
            meter_serial=serial,
            channel_message_id=f"{serial}:{i}",
            taken_at=start + timedelta(hours=i),
        )

    tasks = []
    for i in range(10):
        for serial in ("M-1", "M-5", "M-6"):
            tasks += [asyncio.create_task(intake.submit(reading(serial, i))) for _ in range(2)]
        await asyncio.sleep(0.003)  # waves, so that several groups are on their way at once
    verdicts = await asyncio.gather(*tasks)
    for first, second in zip(verdicts[::2], verdicts[1::2], strict=True):
        assert first.receipt == second.receipt and first.status == second.status
    # ...and in the order they arrived: no reading is refused as older than one sent after it.
    assert [v.status for v in verdicts] == [Status.ACCEPTED] * 60
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(inbound))).scalar_one() == 30
        assert (await conn.execute(select(func.count()).select_from(readings))).scalar_one() == 30


async def test_postgresql_decides_a_meters_readings_in_the_order_they_came(
    intake: Intake, db_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two groups are decided at once on PostgreSQL; the later one must not lock (and decide) a
    meter before the earlier one, or the earlier reading would be refused as older than the last."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite groups are decided one after another by the writer process")
    import asyncio
    from datetime import timedelta

    from gateway.decide import Decider

    lookup = Decider._lookup

    async def slow_first_group(self: Decider, conn: Any, fresh: list[Any]) -> Any:
        found = await lookup(self, conn, fresh)
        if any(p.sub.channel_message_id == "first" for p in fresh):
            await asyncio.sleep(0.3)  # the first group is slow to reach its row locks
        return found

    monkeypatch.setattr(Decider, "_lookup", slow_first_group)

    def reading(mid: str, value: str, hours_ago: int) -> Submission:
        at = clock() - timedelta(hours=hours_ago)
        return Submission(
            Channel.DEVICE,
            clock(),
            "d",
            values={"T": value},
            meter_serial="M-1",
            channel_message_id=mid,
            taken_at=at,
        )

    first = asyncio.create_task(intake.submit(reading("first", "100", 2)))
    await asyncio.sleep(0.05)  # its group is on its way when the next reading comes
    second = asyncio.create_task(intake.submit(reading("second", "101", 1)))
    earlier, later = await asyncio.gather(first, second)
    assert (earlier.status, later.status) == (Status.ACCEPTED, Status.ACCEPTED)
    assert later.receipt is not None and earlier.receipt is not None and later.receipt > earlier.receipt
