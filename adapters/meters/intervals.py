"""Interval data (table `meter_intervals`): what meters counted that is kept beside billing.

Two kinds of rows:
- `register`: a polled meter's counter at the moment it was read, in kWh times the registry's
  ratio (raw register beside it), written by the bus worker for the polls billing is not sent
  (a bus's `billing = "daily"` or `"period"`) and, marked `status = "billed"`, for those it is;
- `energy`: the kWh consumed over an interval (start_at, at], imported from head-end files
  (XML 80020/80040, adapters/meters/xml80020/).

One row per meter, zone, kind and moment: storing the same point again changes nothing and says
so ("unchanged"), another value for a stored point is kept out ("conflict"), so a repeated poll
or a file imported twice adds nothing. `GET /api/v1/meters/{serial}/intervals` lists them
(adapters/meters/api.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.meters.tables import meter_intervals

KINDS = ("register", "energy")
BILLED = "billed"  # `status` of a polled reading that was also sent to billing
MAX_LIST = 10_000  # rows one listing returns at most
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class IntervalRow:
    """One point of interval data as a source hands it over."""

    meter_serial: str
    zone: str
    kind: str  # "register" | "energy"
    at: datetime  # register: when read; energy: the interval's end (aware)
    value: Decimal  # kWh (a register: times the registry's ratio)
    source: str  # "modbus:<bus>:<unit>", "80020:<file>:<channel>", ...
    start_at: datetime | None = None  # energy: the interval's start
    raw_value: Decimal | None = None  # the register as read, when a ratio applies
    status: str | None = None  # as the source marks the value (80020 `status`), `billed`


def _key(serial: str, zone: str, kind: str, at: datetime) -> tuple[str, str, str, datetime]:
    return serial, zone, kind, at


async def store_intervals(
    conn: AsyncConnection, rows: Sequence[IntervalRow], received_at: datetime
) -> list[str]:
    """Store the points not stored yet, in the caller's transaction; for each row in order:
    "stored" (new), "unchanged" (the same value is there) or "conflict" (another value is
    there: the stored one is kept)."""
    if not rows:
        return []
    for row in rows:
        if row.kind not in KINDS:
            raise ValueError(f"interval kind {row.kind!r} is not one of {', '.join(KINDS)}")
    existing: dict[tuple[str, str, str, datetime], Decimal] = {}
    serials = sorted({r.meter_serial for r in rows})
    first, last = min(r.at for r in rows), max(r.at for r in rows)
    for start in range(0, len(serials), _CHUNK):
        chunk = serials[start : start + _CHUNK]
        query = select(
            meter_intervals.c.meter_serial,
            meter_intervals.c.zone,
            meter_intervals.c.kind,
            meter_intervals.c.at,
            meter_intervals.c.value,
        ).where(
            meter_intervals.c.meter_serial.in_(chunk),
            meter_intervals.c.at >= first,
            meter_intervals.c.at <= last,
        )
        for r in (await conn.execute(query)).all():
            existing[_key(r.meter_serial, r.zone, r.kind, r.at)] = Decimal(r.value)
    outcomes: list[str] = []
    new: list[dict[str, Any]] = []
    for row in rows:
        key = _key(row.meter_serial, row.zone, row.kind, row.at)
        had = existing.get(key)
        if had is not None:
            outcomes.append("unchanged" if had == row.value else "conflict")
            continue
        existing[key] = row.value
        outcomes.append("stored")
        new.append(
            {
                "meter_serial": row.meter_serial,
                "zone": row.zone,
                "kind": row.kind,
                "start_at": row.start_at,
                "at": row.at,
                "value": format(row.value, "f"),
                "raw_value": None if row.raw_value is None else format(row.raw_value, "f"),
                "status": row.status,
                "source": row.source[:128],
                "received_at": received_at,
            }
        )
    if new:
        # Another process storing the same point at the same moment: its row stands.
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        await conn.execute(dialect.insert(meter_intervals).on_conflict_do_nothing(), new)
    return outcomes


async def list_intervals(
    engine: AsyncEngine,
    serial: str,
    since: datetime,
    until: datetime,
    kind: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """A meter's points with `since <= at < until`, oldest first (at most `limit`)."""
    where = [
        meter_intervals.c.meter_serial == serial,
        meter_intervals.c.at >= since,
        meter_intervals.c.at < until,
    ]
    if kind is not None:
        where.append(meter_intervals.c.kind == kind)
    query = (
        select(meter_intervals)
        .where(and_(*where))
        .order_by(meter_intervals.c.at, meter_intervals.c.zone, meter_intervals.c.kind)
        .limit(min(limit, MAX_LIST))
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [
        {
            "zone": r["zone"],
            "kind": r["kind"],
            "start_at": r["start_at"].isoformat() if r["start_at"] else None,
            "at": r["at"].isoformat(),
            "value": r["value"],
            "raw_value": r["raw_value"],
            "status": r["status"],
            "source": r["source"],
        }
        for r in rows
    ]


async def last_register_at(engine: AsyncEngine, serials: Sequence[str], billed: bool) -> dict[str, datetime]:
    """The latest polled register point of each meter (only those sent to billing when `billed`)."""
    out: dict[str, datetime] = {}
    for start in range(0, len(serials), _CHUNK):
        chunk = list(serials[start : start + _CHUNK])
        where = [meter_intervals.c.meter_serial.in_(chunk), meter_intervals.c.kind == "register"]
        if billed:
            where.append(meter_intervals.c.status == BILLED)
        query = (
            select(meter_intervals.c.meter_serial, func.max(meter_intervals.c.at).label("at"))
            .where(*where)
            .group_by(meter_intervals.c.meter_serial)
        )
        async with engine.connect() as conn:
            for r in (await conn.execute(query)).all():
                if r.at is not None:
                    out[r.meter_serial] = r.at
    return out


async def purge_before(engine: AsyncEngine, before: datetime, kind: str | None = None) -> int:
    """Forget the points (of this kind) older than `before`; how many went."""
    where = [meter_intervals.c.at < before]
    if kind is not None:
        where.append(meter_intervals.c.kind == kind)
    async with engine.begin() as conn:
        result = await conn.execute(delete(meter_intervals).where(*where))
    return int(result.rowcount or 0)
