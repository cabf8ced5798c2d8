"""Shared fixtures: the store on both real databases, a settable clock, a running gateway.

Every store, intake and billing test that takes `db_url` runs twice: on SQLite (a fresh file)
and on PostgreSQL at 127.0.0.1:5432 (a database made for this test session, emptied per test).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict, TypeVar

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.calendar import WorkCalendar
from gateway.config import Config, load_config
from gateway.intake import Intake
from gateway.registry import import_registry
from gateway.service import Gateway
from gateway.store.database import create_engine
from gateway.store.migrate import upgrade
from gateway.store.tables import all_tables

PG_ADMIN_URL = os.environ.get("MG_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
BILLING_TOKEN = "test-billing-token"
DEVICE_TOKEN = "test-device-token"
REGISTRY_CSV = """account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address
1000001,M-1,Меркурий 201,T,6,+79161234567,10,ул. Ленина 1-1
1000002,M-2,Меркурий 200,T1;T2,6,+79161234568,10,ул. Ленина 1-2
1000003,M-3,Нева 303,T1;T2;T3,5,+79161234569;+79031112233,15,ул. Ленина 1-3
1000004,M-4A,Меркурий 201,T,6,,10,ул. Ленина 1-4
1000004,M-4B,Меркурий 201,T,6,,10,ул. Ленина 1-4
1000005,M-5,Меркурий 201,T,6,+79031112233,10,ул. Ленина 1-5
1000006,M-6,Меркурий 201,T,6,,10,ул. Ленина 1-6
"""


class FakeClock:
    """A clock tests can stand on any day with; the gateway reads it for every decision."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    # A Tuesday inside the acceptance window (15th-25th), 12:00 Moscow time.
    return FakeClock(datetime(2026, 11, 17, 9, 0, tzinfo=UTC))


def _pg_available() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


T = TypeVar("T")


def _run_in_thread(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run from a fixture that may be set up inside a running event loop."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of this test session, migrated once, dropped at the end."""
    if not _pg_available():
        pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 (make test starts it)")
    name = f"mg_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def create() -> str:
        admin = create_engine(PG_ADMIN_URL)
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        await admin.dispose()
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()
        return url

    async def drop() -> None:
        admin = create_engine(PG_ADMIN_URL)
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()

    url = _run_in_thread(create)
    yield url
    _run_in_thread(drop)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, empty database: a new SQLite file, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()
        yield url
        return
    url = request.getfixturevalue("pg_database")
    engine = create_engine(url)
    tables = ", ".join(t.name for t in all_tables().sorted_tables)  # every table, not only those imported
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()
    yield url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


def make_config(db_url: str, tmp_path: Path, **sections: dict[str, object]) -> Config:
    registry = tmp_path / "registry.csv"
    registry.write_text(REGISTRY_CSV, encoding="utf-8")
    env = {
        "GATEWAY_DATABASE_URL": db_url,
        "GATEWAY_HTTP_PORT": "0",
        "GATEWAY_REGISTRY_CSV": str(registry),
        "GATEWAY_BILLING_TOKENS": f'["{BILLING_TOKEN}", "second-billing-token"]',
        "GATEWAY_DEVICES_TOKENS": f'["{DEVICE_TOKEN}"]',
    }
    config = load_config(None, env)
    for section, values in sections.items():
        current = getattr(config, section)
        config = config.model_copy(update={section: current.model_copy(update=values)})
    return config


async def start_intake(engine: AsyncEngine, config: Config, clock: FakeClock) -> Intake:
    """An intake on `engine` with the configuration's registry imported, started."""
    await import_registry(engine, config.registry.csv or "")
    it = Intake(engine, config, WorkCalendar(config.calendar.timezone), clock=clock)
    await it.start()
    return it


@pytest.fixture
async def intake(engine: AsyncEngine, db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Intake]:
    """An intake with the test registry, on each database."""
    it = await start_intake(engine, make_config(db_url, tmp_path), clock)
    yield it
    await it.stop()


class PushedReading(TypedDict):
    reading_id: int | None
    zone: str
    value: str | None


class PushedReason(TypedDict):
    code: str
    severity: str
    zone: str | None
    message_ru: str
    message_en: str


class PushResult(TypedDict):
    """One item's answer from `POST /api/v1/readings` (the Verdict as JSON, with the item's id)."""

    id: object
    status: str
    receipt: int | None
    duplicate: bool
    account: str | None
    meter_serial: str | None
    period: str | None
    readings: list[PushedReading]
    reasons: list[PushedReason]


@dataclass
class Running:
    gateway: Gateway
    base: str
    http: aiohttp.ClientSession
    clock: FakeClock

    async def post(self, path: str, json: object = None, token: str | None = None) -> tuple[int, object]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.post(self.base + path, json=json, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def get(self, path: str, token: str | None = None) -> tuple[int, object]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(self.base + path, headers=headers) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    async def push(self, *items: Mapping[str, object]) -> list[PushResult]:
        status, body = await self.post("/api/v1/readings", {"readings": list(items)}, token=DEVICE_TOKEN)
        assert status == 200, body
        assert isinstance(body, dict)
        results: list[PushResult] = body["results"]
        return results


@pytest.fixture
async def running(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Running]:
    """A real gateway on a free loopback port, with the test registry loaded."""
    gateway = Gateway(make_config(db_url, tmp_path), clock=clock)
    await gateway.start()
    async with aiohttp.ClientSession() as http:
        yield Running(gateway, f"http://127.0.0.1:{gateway.port}", http, clock)
    await gateway.stop()


def stored(reading: PushedReading) -> int:
    """The id of a reading the gateway stored (the answer has None only for a value it did not store)."""
    assert reading["reading_id"] is not None, reading
    return reading["reading_id"]
