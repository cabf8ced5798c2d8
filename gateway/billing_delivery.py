"""Billing told, not only asked: sinks that deliver batches of readings themselves (README, "Billing
sinks"). The core holds the rules; a door brings the transport (adapters/billing/sinks/).

A sink has a role:

- `billing`: the sink is how billing receives readings. It leases batches as a pull client would
  (client `sink:<name>`, gateway/billing.py), but the lease never runs out: billing may have
  received a batch whose acknowledgement the sink never saw, so the same batch, with its id as
  the idempotency key, is offered again (after a failure, a time-out, a restart of the gateway)
  until the sink acknowledges it; then it is committed, and the delivery recorded, in one
  transaction. A reading therefore reaches billing in exactly one batch, under one key.
- `copy`: the sink gets every batch billing committed (through the pull API or a billing sink)
  from the time the sink was first configured, each once acknowledged, for the retailer's other
  systems; billing's SLA does not wait on it.

A transport's `deliver(batch)` returns on the far side's acknowledgement and raises otherwise; an
attempt is bounded by the sink's time-out, and failures are retried with a doubling pause. Every
attempt is recorded in `sink_deliveries` (gateway/store/schema_sinks.py), which the SLA view and
the `gateway_sink_*` metrics read. Several gateway processes on one database may offer the same
open batch at once: it carries the same key, so the far side keeps one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.billing import NEVER, BatchNotFound, Billing, LeaseExpired, _available
from gateway.metrics import Metrics
from gateway.model import Status
from gateway.store.schema import batches, readings
from gateway.store.schema_sinks import billing_sinks, sink_deliveries

log = logging.getLogger(__name__)

Role = Literal["billing", "copy"]
SINK_CLIENT = "sink:"  # batches.client of a billing sink's batches: "sink:<name>"
# A batch committed by another process may become visible a little after its commit time; a copy
# sink looks back this far past the point it has copied everything through.
SETTLE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Batch:
    """What a transport delivers: the batch id (the idempotency key) and its readings, each in the
    shape of the billing API (gateway.billing.reading_json)."""

    id: str
    readings: list[dict[str, Any]]


class Transport(Protocol):
    async def deliver(self, batch: Batch) -> None:
        """Return once the far side has acknowledged the batch; raise otherwise."""

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """The core's view of one configured sink (its door's section says the rest)."""

    name: str
    role: Role
    batch_size: int
    interval_seconds: float  # pause after finding nothing to deliver
    timeout_seconds: float  # one attempt at most
    retry_initial_seconds: float  # pause after a failure, doubling...
    retry_max_seconds: float  # ...up to this


def _upsert(conn: AsyncConnection) -> Any:
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert


class SinkRunner:
    """One sink's delivery loop (a background task of `meter-gateway run`) and its state."""

    def __init__(
        self,
        spec: SinkSpec,
        transport: Transport,
        billing: Billing,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.spec = spec
        self.transport = transport
        self.billing = billing
        self.engine = billing.engine
        self.metrics = metrics
        self.clock = clock
        self.client = SINK_CLIENT + spec.name
        self._failures = 0  # consecutive failed attempts, for /healthz
        self._last_error: str | None = None

    async def run(self, host: Any = None) -> None:
        """Deliver whatever is waiting, batch after batch; pause when nothing is, back off on failures."""
        await self._register(self.clock())
        pause = self.spec.retry_initial_seconds
        try:
            while True:
                batch = await self._next(self.clock())
                if batch is None:
                    await self._refresh(self.clock())
                    await asyncio.sleep(self.spec.interval_seconds)
                    continue
                try:
                    await asyncio.wait_for(self.transport.deliver(batch), self.spec.timeout_seconds)
                except Exception as exc:  # whatever the transport raised: retried, never fatal
                    error = _describe(exc, self.spec.timeout_seconds)
                    log.warning("sink %s: batch %s not delivered: %s", self.spec.name, batch.id, error)
                    await self._failed(batch, error, self.clock())
                    await self._refresh(self.clock())
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, self.spec.retry_max_seconds)
                    continue
                await self._delivered(batch, self.clock())
                await self._refresh(self.clock())
                pause = self.spec.retry_initial_seconds
        finally:
            await self.transport.close()

    def health(self) -> dict[str, Any]:
        """For /healthz: degraded (not down: intake goes on) while the sink fails."""
        if self._failures:
            return {"status": "degraded", "failures": self._failures, "error": self._last_error}
        return {"status": "ok"}

    # -- choosing the batch -------------------------------------------------------------------

    async def _register(self, now: datetime) -> None:
        async with self.engine.begin() as conn:
            insert = _upsert(conn)(billing_sinks).values(
                name=self.spec.name, started_at=now, copied_through=now
            )
            await conn.execute(insert.on_conflict_do_nothing())

    async def _next(self, now: datetime) -> Batch | None:
        if self.spec.role == "billing":
            return await self._next_for_billing(now)
        return await self._next_copy(now)

    async def _next_for_billing(self, now: datetime) -> Batch | None:
        """This sink's open batch (the same one again after a failure or a restart), else a new one."""
        async with self.engine.connect() as conn:
            open_id = (
                await conn.execute(
                    select(batches.c.id)
                    .where(batches.c.client == self.client, batches.c.committed_at.is_(None))
                    .where(batches.c.lease_expires_at == NEVER)
                    .order_by(batches.c.created_at, batches.c.id)
                    .limit(1)
                )
            ).scalar_one_or_none()
        if open_id is not None:
            return Batch(open_id, await self.billing.batch_readings(open_id))
        leased = await self.billing.lease_for_sink(self.client, self.spec.batch_size, now)
        return None if leased is None else Batch(*leased)

    def _undelivered(self) -> Any:
        return ~exists().where(
            sink_deliveries.c.sink == self.spec.name,
            sink_deliveries.c.batch_id == batches.c.id,
            sink_deliveries.c.delivered_at.is_not(None),
        )

    async def _next_copy(self, now: datetime) -> Batch | None:
        """The earliest committed batch this sink has not delivered, committed since it was first
        configured (from `copied_through`, which this moves on as batches are copied)."""
        async with self.engine.begin() as conn:
            through = (
                await conn.execute(
                    select(billing_sinks.c.copied_through).where(billing_sinks.c.name == self.spec.name)
                )
            ).scalar_one()
            found = (
                await conn.execute(
                    select(batches.c.id, batches.c.committed_at)
                    .where(batches.c.committed_at >= through, batches.c.size > 0, self._undelivered())
                    .order_by(batches.c.committed_at, batches.c.id)
                    .limit(1)
                )
            ).first()
            # Everything committed before the first undelivered batch (or before now, when there is
            # none) has been copied, except what may not be visible yet.
            moved = min(found.committed_at, now - SETTLE) if found else now - SETTLE
            if moved > through:
                await conn.execute(
                    update(billing_sinks)
                    .where(billing_sinks.c.name == self.spec.name)
                    .values(copied_through=moved)
                )
        if found is None:
            return None
        return Batch(found.id, await self.billing.batch_readings(found.id))

    # -- recording the outcome ----------------------------------------------------------------

    async def _record(self, conn: AsyncConnection, batch: Batch, now: datetime, error: str | None) -> None:
        values = {"last_attempt_at": now, "last_error": error}
        if error is None:
            values["delivered_at"] = now
        insert = _upsert(conn)(sink_deliveries).values(
            sink=self.spec.name,
            batch_id=batch.id,
            size=len(batch.readings),
            attempts=1,
            first_attempt_at=now,
            **values,
        )
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=[sink_deliveries.c.sink, sink_deliveries.c.batch_id],
                set_={"attempts": sink_deliveries.c.attempts + 1, **values},
            )
        )

    async def _failed(self, batch: Batch, error: str, now: datetime) -> None:
        self._failures += 1
        self._last_error = error
        self.metrics.sink_batches.labels(self.spec.name, "failed").inc()
        async with self.engine.begin() as conn:
            await self._record(conn, batch, now, error)

    async def _delivered(self, batch: Batch, now: datetime) -> None:
        async def record(conn: AsyncConnection) -> None:
            await self._record(conn, batch, now, None)

        if self.spec.role == "billing":
            try:
                await self.billing.commit(batch.id, now, also=record)
            except (BatchNotFound, LeaseExpired):
                # Only a batch someone released by hand gets here: its readings are leased afresh.
                log.error(
                    "sink %s: batch %s was delivered but can no longer be committed", self.spec.name, batch.id
                )
                await self.billing.release(batch.id, now)
                return
        else:
            async with self.engine.begin() as conn:
                await record(conn)
        self._failures = 0
        self._last_error = None
        self.metrics.sink_batches.labels(self.spec.name, "delivered").inc()
        self.metrics.sink_readings.labels(self.spec.name).inc(len(batch.readings))
        self.metrics.sink_last_delivery.labels(self.spec.name).set(now.timestamp())

    # -- what operators see -------------------------------------------------------------------

    async def state(self, now: datetime) -> dict[str, Any]:
        """The sink in the SLA view: readings waiting for it, the batch in hand (with its attempts
        and last error) and its last delivery."""
        name = self.spec.name
        async with self.engine.connect() as conn:
            if self.spec.role == "billing":
                mine = select(batches.c.id).where(
                    batches.c.client == self.client, batches.c.committed_at.is_(None)
                )
                pending = (
                    await conn.execute(
                        select(func.count()).where(
                            or_(
                                _available(now),
                                and_(
                                    readings.c.verdict == Status.ACCEPTED.value,
                                    readings.c.committed_at.is_(None),
                                    readings.c.batch_id.in_(mine),
                                ),
                            )
                        )
                    )
                ).scalar_one()
            else:
                through = (
                    await conn.execute(
                        select(billing_sinks.c.copied_through).where(billing_sinks.c.name == name)
                    )
                ).scalar_one_or_none()
                pending = 0
                if through is not None:
                    pending = (
                        await conn.execute(
                            select(func.coalesce(func.sum(batches.c.size), 0)).where(
                                batches.c.committed_at >= through, self._undelivered()
                            )
                        )
                    ).scalar_one()
            open_row = (
                (
                    await conn.execute(
                        select(sink_deliveries)
                        .where(sink_deliveries.c.sink == name, sink_deliveries.c.delivered_at.is_(None))
                        .order_by(sink_deliveries.c.first_attempt_at)
                        .limit(1)
                    )
                )
                .mappings()
                .first()
            )
            last = (
                await conn.execute(
                    select(func.max(sink_deliveries.c.delivered_at)).where(sink_deliveries.c.sink == name)
                )
            ).scalar_one()
        failing = None
        if open_row is not None:
            failing = {
                "batch_id": open_row["batch_id"],
                "size": open_row["size"],
                "attempts": open_row["attempts"],
                "since": open_row["first_attempt_at"].isoformat(),
                "last_attempt_at": open_row["last_attempt_at"].isoformat(),
                "last_error": open_row["last_error"],
            }
        return {
            "sink": name,
            "role": self.spec.role,
            "pending": int(pending),
            "failing": failing,
            "last_delivered_at": last.isoformat() if last else None,
        }

    async def _refresh(self, now: datetime) -> None:
        """The sink's gauges, from the same figures as the SLA view."""
        state = await self.state(now)
        self.metrics.sink_pending.labels(self.spec.name).set(state["pending"])
        failing = state["failing"]
        since = datetime.fromisoformat(failing["since"]) if failing else None
        self.metrics.sink_failing.labels(self.spec.name).set((now - since).total_seconds() if since else 0.0)
        if state["last_delivered_at"]:
            self.metrics.sink_last_delivery.labels(self.spec.name).set(
                datetime.fromisoformat(state["last_delivered_at"]).timestamp()
            )


async def release_orphans(billing: Billing, billing_sinks_configured: set[str], now: datetime) -> int:
    """Return to the pool the readings of open batches of billing sinks no longer configured (or
    now copies): nothing else would ever deliver them. Returns how many batches were released."""
    clients = {SINK_CLIENT + name for name in billing_sinks_configured}
    async with billing.engine.begin() as conn:
        done = await conn.execute(
            update(batches)
            .where(
                batches.c.client.startswith(SINK_CLIENT),
                batches.c.client.not_in(clients) if clients else batches.c.client.is_not(None),
                batches.c.committed_at.is_(None),
                batches.c.lease_expires_at == NEVER,
            )
            .values(lease_expires_at=now)
        )
    return done.rowcount


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no acknowledgement within {timeout:g} s"
    text = str(exc) or type(exc).__name__
    return text[:200]
