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

import collections
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.branches import Branch, Branches
from gateway.config import Config
from gateway.model import CHANNEL_GROUP, RuleGroup, Status
from gateway.store.schema import accounts, audit, batches, meters, readings
from gateway.store.schema_held import FANOUT, notices

READING_COLUMNS = (
    readings.c.id.label("reading_id"),
    accounts.c.number.label("account"),
    meters.c.serial.label("meter_serial"),
    readings.c.zone,
    readings.c.value,
    readings.c.raw_value,
    readings.c.ratio,
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
    readings.c.control,
)


HELD = (Status.FLAGGED, Status.NEEDS_CONFIRMATION)
NEVER = datetime(9999, 1, 1, tzinfo=UTC)  # the lease of a sink's batch (see `lease_for_sink`)
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
        # a meter behind instrument transformers: the register as read and ct x vt (value = both
        # multiplied); otherwise the register is the value and the ratio 1
        "raw_value": row.raw_value or row.value,
        "ratio": row.ratio or "1",
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
        # a control reading: taken by the retailer's inspector (README, "Inspectors' control readings")
        "control": bool(row.control),
    }


async def _batch_rows(conn: AsyncConnection, batch_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(*READING_COLUMNS)
        .select_from(_joined())
        .where(readings.c.batch_id == batch_id)
        .order_by(readings.c.id)
    )
    return [reading_json(r) for r in rows]


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

    def __init__(self, engine: AsyncEngine, lease_seconds: int, branches: Branches | None = None) -> None:
        """`branches`: the branches the backlog and the SLA view are told per (gateway/branches.py);
        None: the default branch alone (every account counts under it)."""
        self.engine = engine
        self.lease_seconds = lease_seconds
        self.branches = branches or Branches(Config())
        self._postgres = engine.dialect.name == "postgresql"

    async def lease(self, client: str, limit: int, now: datetime) -> tuple[str, list[dict[str, Any]]]:
        """Lease up to `limit` readings as a new batch; returns its id and the readings."""
        leased = await self._lease(client, limit, now, now + timedelta(seconds=self.lease_seconds), True)
        assert leased is not None  # an empty batch is kept for the pull API
        return leased

    async def lease_for_sink(
        self, client: str, limit: int, now: datetime
    ) -> tuple[str, list[dict[str, Any]]] | None:
        """A batch for a sink that delivers to billing (gateway/billing_delivery.py): its lease never
        runs out, because billing may have received it even when the sink saw no acknowledgement,
        so only that sink's commit (or `release`) ends it. None when nothing is waiting."""
        return await self._lease(client, limit, now, NEVER, False)

    async def _lease(
        self, client: str, limit: int, now: datetime, expires: datetime, keep_empty: bool
    ) -> tuple[str, list[dict[str, Any]]] | None:
        batch_id = str(uuid.uuid4())
        async with self.engine.begin() as conn:
            pick = select(readings.c.id).where(_available(now)).order_by(readings.c.id).limit(limit)
            if self._postgres:
                # Concurrent billing clients skip each other's rows instead of queueing behind them.
                pick = pick.with_for_update(skip_locked=True)
            ids = list((await conn.execute(pick)).scalars())
            if not ids and not keep_empty:
                return None
            await conn.execute(
                batches.insert().values(
                    id=batch_id, client=client, created_at=now, lease_expires_at=expires, size=len(ids)
                )
            )
            if ids:
                await conn.execute(update(readings).where(readings.c.id.in_(ids)).values(batch_id=batch_id))
            rows = await _batch_rows(conn, batch_id) if ids else []
        return batch_id, rows

    async def batch_readings(self, batch_id: str) -> list[dict[str, Any]]:
        """The readings of a batch (leased or committed), as billing receives them."""
        async with self.engine.connect() as conn:
            return await _batch_rows(conn, batch_id)

    async def release(self, batch_id: str, now: datetime) -> None:
        """End a batch's lease now, uncommitted: its readings can be leased again."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.committed_at.is_(None))
                .values(lease_expires_at=now)
            )

    async def commit(
        self, batch_id: str, now: datetime, also: Callable[[AsyncConnection], Awaitable[None]] | None = None
    ) -> CommitResult:
        """Record that billing has the batch; committing again answers the same. `also` runs in the
        commit's transaction (a sink records its delivery there, so the two never disagree)."""
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
            if also is not None:
                await also(conn)
            return CommitResult(batch_id, now, batch["size"], already=False)

    async def backlog(self, now: datetime) -> dict[str, Any]:
        """Counts operators watch: pending, overdue, held, the oldest pending and the next deadline;
        and the same under `branches`, for each branch (id -> its figures and `name`)."""
        pending = _pending()
        held_values = [s.value for s in HELD]
        branch = accounts.c.branch
        of_account = readings.join(accounts, accounts.c.id == readings.c.account_id)

        def grouped(*columns: Any) -> Any:
            return select(branch, *columns).select_from(of_account)

        async with self.engine.connect() as conn:
            waiting = await conn.execute(
                grouped(func.count(), func.min(readings.c.received_at), func.min(readings.c.due_at))
                .where(pending)
                .group_by(branch)
            )
            overdue = await conn.execute(
                grouped(func.count()).where(pending, readings.c.due_at <= now).group_by(branch)
            )
            held = await conn.execute(
                grouped(readings.c.verdict, func.count())
                .where(readings.c.verdict.in_(held_values))
                .group_by(branch, readings.c.verdict)
            )
            held_overdue = await conn.execute(
                grouped(readings.c.verdict, func.count())
                .where(readings.c.verdict.in_(held_values), readings.c.due_at <= now)
                .group_by(branch, readings.c.verdict)
            )
            late = await conn.execute(
                grouped(func.count())
                .where(pending, readings.c.due_at <= now, _released_at().self_group() >= readings.c.due_at)
                .group_by(branch)
            )
            total = _Figures()
            per = {b.id: _Figures() for b in self.branches}
            for stored, count, oldest, next_due in waiting:
                for f in (total, per[self.branches.key_of(stored)]):
                    f.pending += count
                    f.oldest = min(filter(None, (f.oldest, oldest)), default=None)
                    f.next_due = min(filter(None, (f.next_due, next_due)), default=None)
            for stored, count in overdue:
                for f in (total, per[self.branches.key_of(stored)]):
                    f.overdue += count
            for stored, verdict, count in held:
                for f in (total, per[self.branches.key_of(stored)]):
                    f.held[verdict] += count
            for stored, verdict, count in held_overdue:
                for f in (total, per[self.branches.key_of(stored)]):
                    f.held_overdue[verdict] += count
            for stored, count in late:
                for f in (total, per[self.branches.key_of(stored)]):
                    f.from_hold += count
        return {
            **total.as_dict(now),
            "branches": {b.id: {"name": b.name, **per[b.id].as_dict(now)} for b in self.branches},
        }

    async def sla(self, now: datetime, limit: int = 1000, branch: Branch | None = None) -> dict[str, Any]:
        """The backlog plus the pending and held readings themselves, soonest deadline first, each
        with its state (`pending` for billing, `needs_confirmation`, `flagged`) and overdue marked;
        with `branch`, that branch's figures and readings alone."""
        summary = await self.backlog(now)
        waiting = or_(_pending(), readings.c.verdict.in_([s.value for s in HELD]))
        if branch is not None:
            per_branch = summary.pop("branches")
            summary = {"branch": branch.id, **per_branch[branch.id]}
            waiting = and_(waiting, self.branches.members(branch))
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(*READING_COLUMNS, _released_at(), accounts.c.branch)
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
            item["branch"] = self.branches.key_of(r.branch)
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


@dataclass
class _Figures:
    """The backlog's figures of one branch (or of all), summed from the grouped counts."""

    pending: int = 0
    overdue: int = 0
    oldest: datetime | None = None
    next_due: datetime | None = None
    from_hold: int = 0
    held: collections.Counter[str] = field(default_factory=collections.Counter)
    held_overdue: collections.Counter[str] = field(default_factory=collections.Counter)

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "overdue": self.overdue,
            "oldest_received_at": self.oldest.isoformat() if self.oldest else None,
            "oldest_age_seconds": (now - self.oldest).total_seconds() if self.oldest else 0.0,
            "next_due_at": self.next_due.isoformat() if self.next_due else None,
            "overdue_from_hold": self.from_hold,
            "held": {s.value: self.held[s.value] for s in HELD},
            "held_overdue": {s.value: self.held_overdue[s.value] for s in HELD},
        }


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
