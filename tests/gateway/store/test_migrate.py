"""Upgrades without surprise (gateway/store/migrate.py): a database filled at an old revision keeps
every reading through the upgrade to the head, on SQLite and PostgreSQL; upgrading again, or
from two gateways at once, is safe."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from gateway.billing import Billing
from gateway.config import load_config
from gateway.exporting import export_readings
from gateway.store.database import create_engine
from gateway.store.migrate import alembic_config, upgrade
from tests.conftest import PG_ADMIN_URL

OLD = "0006"  # before 0007 brought SQLite's times to one text form: the data migration runs too
HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


@asynccontextmanager
async def _new_pg_database() -> AsyncIterator[str]:
    name = f"mg_upgrade_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL)
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database with no schema at all: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    async with _new_pg_database() as url:
        yield url


def _stored_time(moment: datetime, sqlite: bool, n: int) -> Any:
    """A time as the gateway of that revision wrote it: on SQLite as text, half of them in the
    sqlite3 adapter's form with '+00:00' (what 0007 rewrites), some without microseconds."""
    if not sqlite:
        return moment
    naive = moment.replace(tzinfo=None)
    form = naive.isoformat(sep=" ", timespec="seconds" if n % 3 == 0 else "microseconds")
    return form + "+00:00" if n % 2 == 0 else form


async def _fill_at_old_revision(url: str) -> list[dict[str, Any]]:
    """Schema at OLD, then an account, a two-zone meter and 40 readings of every kind written in
    that revision's columns; returns what billing should see of each."""
    engine = create_engine(url)
    sqlite = url.startswith("sqlite")
    expected: list[dict[str, Any]] = []
    try:
        await upgrade(engine, OLD)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO accounts (id, number, address, updated_at, timezone)"
                    " VALUES (1, '1000001', 'ул. Ленина 1-1', :t, NULL)"
                ),
                {"t": _stored_time(T0, sqlite, 1)},
            )
            await conn.execute(
                text(
                    "INSERT INTO meters (id, account_id, serial, model, zones, digits, max_power_kw,"
                    " active, updated_at) VALUES (1, 1, 'M-1', 'Меркурий 200', 'T1;T2', 6, '10', :a, :t)"
                ),
                {"a": True, "t": _stored_time(T0, sqlite, 1)},
            )
            await conn.execute(
                text(
                    "INSERT INTO batches (id, client, created_at, lease_expires_at, committed_at, size)"
                    " VALUES ('b-1', 'billing', :t, :t, :t, 10)"
                ),
                {"t": _stored_time(T0 + timedelta(days=30), sqlite, 1)},
            )
            for n in range(40):
                received = T0 + timedelta(days=n // 2, minutes=n)
                zone = "T1" if n % 2 == 0 else "T2"
                value = f"{1000 + 7 * n}.{n % 10}"
                verdict = ("accepted", "accepted", "accepted", "rejected", "confirm_pending")[n % 5]
                committed = verdict == "accepted" and n < 14  # the first ones billing already has
                reasons = [] if verdict == "accepted" else [{"code": "too_old", "severity": "reject"}]
                await conn.execute(
                    text(
                        "INSERT INTO inbound (id, channel, channel_message_id, received_at, source,"
                        " payload, response) VALUES (:id, 'sms', :mid, :r, '+79161234567', :p, 'ok')"
                    ),
                    {
                        "id": n + 1,
                        "mid": f"m{n}",
                        "r": _stored_time(received, sqlite, n),
                        "p": f"1000001 {value}",
                    },
                )
                await conn.execute(
                    text(
                        "INSERT INTO readings (id, inbound_id, account_id, meter_id, zone, value, taken_at,"
                        " received_at, channel, source, employee, period, verdict, reasons, due_at,"
                        " batch_id, committed_at)"
                        " VALUES (:id, :id, 1, 1, :zone, :value, :taken, :r, 'sms', '+79161234567', NULL,"
                        " '2026-10', :verdict, :reasons, :due, :batch, :committed)"
                    ),
                    {
                        "id": n + 1,
                        "zone": zone,
                        "value": value,
                        "taken": _stored_time(received - timedelta(hours=1), sqlite, n + 1),
                        "r": _stored_time(received, sqlite, n),
                        "verdict": verdict,
                        "reasons": orjson.dumps(reasons).decode(),
                        "due": _stored_time(received + timedelta(days=1), sqlite, n),
                        "batch": "b-1" if committed else None,
                        "committed": _stored_time(T0 + timedelta(days=30), sqlite, n) if committed else None,
                    },
                )
                expected.append(
                    {
                        "reading_id": n + 1,
                        "account": "1000001",
                        "meter_serial": "M-1",
                        "zone": zone,
                        "value": value,
                        "taken_at": received - timedelta(hours=1),
                        "received_at": received,
                        "verdict": verdict,
                        "reasons": [r["code"] for r in reasons],
                        "committed": committed,
                    }
                )
    finally:
        await engine.dispose()
    return expected


def _exported(url: str, tmp_path: Path, since: datetime, every: bool = True) -> list[dict[str, Any]]:
    config = load_config(None, {"GATEWAY_DATABASE_URL": url, "GATEWAY_DATABASE_AUTO_UPGRADE": "false"})
    out = io.StringIO()
    asyncio.run(export_readings(config, out, "json", since, None, every))
    items: list[dict[str, Any]] = orjson.loads(out.getvalue())
    return items


async def test_readings_written_at_an_old_revision_are_all_there_after_the_upgrade(
    blank_url: str, tmp_path: Path
) -> None:
    expected = await _fill_at_old_revision(blank_url)
    engine = create_engine(blank_url)
    try:
        await upgrade(engine)
        await upgrade(engine)  # `db upgrade` twice: the second finds nothing to do
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all() == [
                HEAD
            ]
        # Billing leases exactly the accepted readings it did not have yet.
        _, leased = await Billing(engine, 300).lease("billing", 1000, T0 + timedelta(days=40))
    finally:
        await engine.dispose()
    assert [r["reading_id"] for r in leased] == [
        e["reading_id"] for e in expected if e["verdict"] == "accepted" and not e["committed"]
    ]

    # What an operator's export shows: every reading, every field as written.
    exported = await asyncio.to_thread(_exported, blank_url, tmp_path, T0 - timedelta(days=1))
    assert len(exported) == len(expected) == 40
    for got, want in zip(exported, expected, strict=True):
        assert got["reading_id"] == want["reading_id"]
        assert (got["account"], got["meter_serial"], got["zone"], got["value"]) == (
            want["account"],
            want["meter_serial"],
            want["zone"],
            want["value"],
        )
        assert datetime.fromisoformat(got["taken_at"]) == want["taken_at"]
        assert datetime.fromisoformat(got["received_at"]) == want["received_at"]
        assert (got["verdict"], got["reasons"], got["committed_at"] is not None) == (
            want["verdict"],
            want["reasons"],
            want["committed"],
        )
    # Times compare as times after the upgrade: a range by receipt returns exactly its readings.
    since = T0 + timedelta(days=10, minutes=20)
    ranged = await asyncio.to_thread(_exported, blank_url, tmp_path, since)
    assert [r["reading_id"] for r in ranged] == [
        e["reading_id"] for e in expected if e["received_at"] >= since
    ]


async def test_two_gateways_upgrading_one_postgresql_database_at_once() -> None:
    """Two gateways started together on one new PostgreSQL database: both succeed, the database
    ends at the head once (the second waited for the first's lock, then had nothing to do)."""
    async with _new_pg_database() as url:
        engines = [create_engine(url), create_engine(url)]
        try:
            await asyncio.gather(*(upgrade(e) for e in engines))
            async with engines[0].connect() as conn:
                versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars()
                assert versions.all() == [HEAD]
        finally:
            for e in engines:
                await e.dispose()
