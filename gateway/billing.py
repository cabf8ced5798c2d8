"""Billing hand-off: leased batches of accepted readings, idempotent commits, the working-day SLA.

Billing pulls: `lease` hands out up to `limit` accepted readings not yet committed and not in a
live lease; `commit` records that billing has them. A lease that is not committed in time expires
and its readings become available again, so a billing client that dies loses nothing, and the
same reading is never in two live batches.

A commit writes a "committed" notice per receipt a person sent (not a meter's own readings) into
the `notices` outbox in its own transaction; the held-readings job tells the resident later, so a commit never waits on a channel.

The SLA view lists, soonest deadline first, the accepted readings billing has not committed and
the held ones (`needs_confirmation`, `flagged`), each with the due time set at receipt. A held
reading keeps that due time when it is released: if the hold outlasted it, the reading is listed
as overdue with `late_by: "hold"` (the lateness is the sender's or the back office's), otherwise
an overdue reading is `late_by: "billing"`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.model import CHANNEL_GROUP, RuleGroup, Status
from gateway.store.schema import accounts, audit, batches, meters, readings
from gateway.store.schema_held import FANOUT, notices

READING_COLUMNS = (
    readings.c.id.label("reading_id"),
    accounts.c.number.label("account"),
    meters.c.serial.label("meter_serial"),
    readings.c.zone,
    readings.c.value,
    readings.c.taken_at,
    readings.c.received_at,
    readings.c.channel,
    readings.c.source,
    readings.c.employee,
    readings.c.period,
    readings.c.verdict,
    readings.c.reasons,
    readings.c.due_at,
    readings.c.committed_at,
)


HELD = (Status.FLAGGED, Status.NEEDS_CONFIRMATION)
RELEASES = ("confirm", "review")  # audit actions that end a hold


def _released_at() -> Any:
    """When the reading's hold ended (its sender confirmed it, or the back office decided)."""
    return (
        select(func.max(audit.c.at))
        .where(audit.c.reading_id == readings.c.id, audit.c.action.in_(RELEASES))
        .scalar_subquery()
        .label("released_at")
    )


def _pending() -> Any:
    """Accepted readings billing has not committed yet (leased or not)."""
    return and_(readings.c.verdict == Status.ACCEPTED.value, readings.c.committed_at.is_(None))


class BatchNotFound(LookupError):
    pass


class LeaseExpired(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class CommitResult:
    batch_id: str
    committed_at: datetime
    size: int
    already: bool


def reading_json(row: Any) -> dict[str, Any]:
    """One reading as billing receives it (the README's billing section)."""
    return {
        "reading_id": row.reading_id,
        "account": row.account,
        "meter_serial": row.meter_serial,
        "zone": row.zone,
        "value": row.value,
        "taken_at": row.taken_at.isoformat(),
        "received_at": row.received_at.isoformat(),
        "channel": row.channel,
        "source": row.source,
        "employee": row.employee,
        "period": row.period,
        "verdict": row.verdict,
        "reasons": [r["code"] for r in orjson.loads(row.reasons)],
        "due_at": row.due_at.isoformat(),
        "committed_at": row.committed_at.isoformat() if row.committed_at else None,
    }


def _joined() -> Any:
    return readings.join(meters, meters.c.id == readings.c.meter_id).join(
        accounts, accounts.c.id == readings.c.account_id
    )


def _available(now: datetime) -> Any:
    """Accepted, uncommitted, and either never leased or in a lease that has expired."""
    expired = select(batches.c.id).where(
        and_(batches.c.committed_at.is_(None), batches.c.lease_expires_at <= now)
    )
    return and_(
        readings.c.verdict == Status.ACCEPTED.value,
        readings.c.committed_at.is_(None),
        or_(readings.c.batch_id.is_(None), readings.c.batch_id.in_(expired)),
    )


class Billing:
    """Leases, commits and the SLA view over the readings table."""

    def __init__(self, engine: AsyncEngine, lease_seconds: int) -> None:
        self.engine = engine
        self.lease_seconds = lease_seconds
        self._postgres = engine.dialect.name == "postgresql"

    async def lease(self, client: str, limit: int, now: datetime) -> tuple[str, list[dict[str, Any]]]:
        """Lease up to `limit` readings as a new batch; returns its id and the readings."""
        batch_id = str(uuid.uuid4())
        async with self.engine.begin() as conn:
            pick = select(readings.c.id).where(_available(now)).order_by(readings.c.id).limit(limit)
            if self._postgres:
                # Concurrent billing clients skip each other's rows instead of queueing behind them.
                pick = pick.with_for_update(skip_locked=True)
            ids = list((await conn.execute(pick)).scalars())
            await conn.execute(
                batches.insert().values(
                    id=batch_id,
                    client=client,
                    created_at=now,
                    lease_expires_at=now + timedelta(seconds=self.lease_seconds),
                    size=len(ids),
                )
            )
            rows: list[Any] = []
            if ids:
                await conn.execute(update(readings).where(readings.c.id.in_(ids)).values(batch_id=batch_id))
                rows = list(
                    (
                        await conn.execute(
                            select(*READING_COLUMNS)
                            .select_from(_joined())
                            .where(readings.c.id.in_(ids))
                            .order_by(readings.c.id)
                        )
                    ).all()
                )
        return batch_id, [reading_json(r) for r in rows]

    async def commit(self, batch_id: str, now: datetime) -> CommitResult:
        """Record that billing has the batch; committing again answers the same."""
        async with self.engine.begin() as conn:
            query = select(batches).where(batches.c.id == batch_id)
            if self._postgres:
                query = query.with_for_update()
            batch = (await conn.execute(query)).mappings().first()
            if batch is None:
                raise BatchNotFound(batch_id)
            if batch["committed_at"] is not None:
                return CommitResult(batch_id, batch["committed_at"], batch["size"], already=True)
            if batch["lease_expires_at"] <= now:
                raise LeaseExpired(batch_id)
            marked = await conn.execute(
                update(readings)
                .where(and_(readings.c.batch_id == batch_id, readings.c.committed_at.is_(None)))
                .values(committed_at=now)
            )
            if marked.rowcount != batch["size"]:
                # Another client leased some of them again (this lease ran out while the commit was
                # on its way): committing only part would tell billing it has readings it does not.
                # Raising rolls the transaction back, so nothing of this batch is committed.
                raise LeaseExpired(batch_id)
            await conn.execute(update(batches).where(batches.c.id == batch_id).values(committed_at=now))
            await _notify_committed(conn, batch_id, now)
            return CommitResult(batch_id, now, batch["size"], already=False)

    async def backlog(self, now: datetime) -> dict[str, Any]:
        """Counts operators watch: pending, overdue, held, the oldest pending and the next deadline."""
        pending = _pending()
        async with self.engine.connect() as conn:
            count, oldest, next_due = (
                await conn.execute(
                    select(func.count(), func.min(readings.c.received_at), func.min(readings.c.due_at)).where(
                        pending
                    )
                )
            ).one()
            overdue = (
                await conn.execute(select(func.count()).where(and_(pending, readings.c.due_at <= now)))
            ).scalar_one()
            held: dict[str, int] = dict(
                (
                    await conn.execute(
                        select(readings.c.verdict, func.count())
                        .where(readings.c.verdict.in_([s.value for s in HELD]))
                        .group_by(readings.c.verdict)
                    )
                ).all()
            )
            held_overdue: dict[str, int] = dict(
                (
                    await conn.execute(
                        select(readings.c.verdict, func.count())
                        .where(readings.c.verdict.in_([s.value for s in HELD]), readings.c.due_at <= now)
                        .group_by(readings.c.verdict)
                    )
                ).all()
            )
            late = select(readings.c.id).where(
                pending, readings.c.due_at <= now, _released_at().self_group() >= readings.c.due_at
            )
            from_hold = (await conn.execute(select(func.count()).select_from(late.subquery()))).scalar_one()
        return {
            "pending": count,
            "overdue": overdue,
            "oldest_received_at": oldest.isoformat() if oldest else None,
            "oldest_age_seconds": (now - oldest).total_seconds() if oldest else 0.0,
            "next_due_at": next_due.isoformat() if next_due else None,
            "overdue_from_hold": from_hold,
            "held": {s.value: held.get(s.value, 0) for s in HELD},
            "held_overdue": {s.value: held_overdue.get(s.value, 0) for s in HELD},
        }

    async def sla(self, now: datetime, limit: int = 1000) -> dict[str, Any]:
        """The backlog plus the pending and held readings themselves, soonest deadline first, each
        with its state (`pending` for billing, `needs_confirmation`, `flagged`) and overdue marked."""
        summary = await self.backlog(now)
        waiting = or_(_pending(), readings.c.verdict.in_([s.value for s in HELD]))
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(*READING_COLUMNS, _released_at())
                    .select_from(_joined())
                    .where(waiting)
                    .order_by(readings.c.due_at, readings.c.id)
                    .limit(limit)
                )
            ).all()
        listed = []
        for r in rows:
            item = reading_json(r)
            overdue = r.due_at <= now
            item["state"] = "pending" if r.verdict == Status.ACCEPTED.value else r.verdict
            item["overdue"] = overdue
            item["released_at"] = r.released_at.isoformat() if r.released_at else None
            late_by = None
            if overdue:
                held_past_due = r.verdict != Status.ACCEPTED.value or (
                    r.released_at is not None and r.released_at >= r.due_at
                )
                late_by = "hold" if held_past_due else "billing"
            item["late_by"] = late_by
            listed.append(item)
        return {"now": now.isoformat(), **summary, "readings": listed, "listed": len(listed)}


# Readings a person sent or dictated; a meter's own readings (devices, Modbus, MQTT) are not told:
# a resident would get one notice per reading the meter makes.
TOLD_CHANNELS = tuple(c.value for c, group in CHANNEL_GROUP.items() if group is not RuleGroup.DEVICES)


async def _notify_committed(conn: AsyncConnection, batch_id: str, now: datetime) -> None:
    """One "committed" notice per receipt of the batch that a person sent, in the commit's
    transaction (the held-readings job sends it once every zone of the receipt is committed)."""
    receipts = (
        select(
            readings.c.inbound_id,
            literal("committed"),
            literal(FANOUT),
            literal(""),
            literal(now, notices.c.created_at.type),
            literal(0),
        )
        .where(readings.c.batch_id == batch_id, readings.c.channel.in_(TOLD_CHANNELS))
        .distinct()
    )
    columns = ["receipt", "kind", "channel", "recipient", "created_at", "attempts"]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    await conn.execute(dialect.insert(notices).from_select(columns, receipts).on_conflict_do_nothing())
