"""What the Modbus poller keeps in the database: bus leases, what it learned about each meter,
events for operators, and the registry zones of the meters it polls.

Leases let several gateway processes on one PostgreSQL share the buses without polling a meter
twice: a bus is polled only by the process holding its lease row. Claiming is one conditional
UPDATE (`... WHERE expires_at < now OR holder = me`), atomic on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.meters.tables import modbus_events, modbus_leases, modbus_meters
from gateway import ratios
from gateway.store.schema import accounts, meters


async def claim_lease(engine: AsyncEngine, bus: str, holder: str, now: datetime, seconds: float) -> bool:
    """Take or renew the bus's lease; False while another live process holds it."""
    until = now + timedelta(seconds=seconds)
    dialect_insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    async with engine.begin() as conn:
        created = await conn.execute(
            dialect_insert(modbus_leases)
            .values(bus=bus, holder=holder, expires_at=until)
            .on_conflict_do_nothing(index_elements=["bus"])
        )
        if created.rowcount == 1:
            return True
        renewed = await conn.execute(
            update(modbus_leases)
            .where(
                modbus_leases.c.bus == bus,
                or_(modbus_leases.c.expires_at < now, modbus_leases.c.holder == holder),
            )
            .values(holder=holder, expires_at=until)
        )
        return renewed.rowcount == 1


async def release_leases(engine: AsyncEngine, buses: list[str], holder: str, now: datetime) -> None:
    """Give the buses up at once (on shutdown), so another process takes them without waiting."""
    if not buses:
        return
    async with engine.begin() as conn:
        await conn.execute(
            update(modbus_leases)
            .where(modbus_leases.c.bus.in_(buses), modbus_leases.c.holder == holder)
            .values(expires_at=now)
        )


async def lease_holders(engine: AsyncEngine) -> dict[str, tuple[str, datetime]]:
    """bus -> (holder, expires_at), for health and tests."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(modbus_leases))).all()
    return {r.bus: (r.holder, r.expires_at) for r in rows}


@dataclass(slots=True)
class KnownMeter:
    """A `modbus_meters` row: what the poller learned about the meter at one bus address."""

    configured_serial: str | None
    serial: str | None
    identity: str | None
    profile: str | None


async def load_known(engine: AsyncEngine, bus: str) -> dict[str, KnownMeter]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(modbus_meters).where(modbus_meters.c.bus == bus))).all()
    return {r.address: KnownMeter(r.configured_serial, r.serial, r.identity, r.profile) for r in rows}


async def save_known(engine: AsyncEngine, bus: str, address: str, known: KnownMeter, now: datetime) -> None:
    """Insert or update one row (only the lease holder of the bus writes it, so no race)."""
    values = {
        "configured_serial": known.configured_serial,
        "serial": known.serial,
        "identity": known.identity,
        "profile": known.profile,
        "updated_at": now,
    }
    async with engine.begin() as conn:
        done = await conn.execute(
            update(modbus_meters)
            .where(and_(modbus_meters.c.bus == bus, modbus_meters.c.address == address))
            .values(**values)
        )
        if done.rowcount == 0:
            await conn.execute(insert(modbus_meters).values(bus=bus, address=address, **values))


async def record_event(
    engine: AsyncEngine,
    *,
    at: datetime,
    bus: str,
    address: str,
    kind: str,
    old_serial: str | None = None,
    new_serial: str | None = None,
    detail: str = "",
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(modbus_events).values(
                at=at,
                bus=bus,
                address=address,
                kind=kind,
                old_serial=old_serial,
                new_serial=new_serial,
                detail=detail,
            )
        )


async def recent_events(engine: AsyncEngine, limit: int = 100) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(modbus_events).order_by(modbus_events.c.id.desc()).limit(limit))
        ).mappings()
        return [dict(r) for r in rows]


async def registry_zones(engine: AsyncEngine, serials: list[str]) -> dict[str, tuple[str, ...]]:
    """The registry's zones of each known serial (meters absent from the registry are left out)."""
    return {serial: row.zones for serial, row in (await registry_meters(engine, serials)).items()}


@dataclass(frozen=True, slots=True)
class RegistryMeter:
    """What the poller needs of a meter's registry row."""

    zones: tuple[str, ...]
    ratio: Decimal | None  # ct x vt (gateway/ratios.py); None: no transformers
    branch: str | None  # the account's branch (None: the default)
    max_power_kw: Decimal | None = None  # the registry's permitted power (None: the rules' default)


async def registry_meters(engine: AsyncEngine, serials: list[str]) -> dict[str, RegistryMeter]:
    """The registry rows of the known serials (meters absent from the registry are left out)."""
    out: dict[str, RegistryMeter] = {}
    if not serials:
        return out
    query = select(
        meters.c.serial,
        meters.c.zones,
        meters.c.ct_ratio,
        meters.c.vt_ratio,
        meters.c.max_power_kw,
        accounts.c.branch,
    ).join(accounts, accounts.c.id == meters.c.account_id)
    async with engine.connect() as conn:
        for start in range(0, len(serials), 500):
            chunk = serials[start : start + 500]
            for r in (await conn.execute(query.where(meters.c.serial.in_(chunk)))).all():
                ratio = ratios.product(
                    Decimal(r.ct_ratio) if r.ct_ratio else None, Decimal(r.vt_ratio) if r.vt_ratio else None
                )
                power = Decimal(r.max_power_kw) if r.max_power_kw else None
                out[r.serial] = RegistryMeter(tuple(r.zones.split(";")), ratio, r.branch, power)
    return out
