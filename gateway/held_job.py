"""The held-readings job: no reading waits forever, and residents hear what became of theirs.

A core job of every `meter-gateway run` (gateway/service.py's CORE_JOBS; the policy's times are
gateway/held_lifecycle.py's). Every `[held] check_seconds` it:

1. expires readings still held when their period closed (gateway/held.py `expire`: rejected,
   reason "expired", an "expired" notice written with it);
2. escalates readings whose sender has not confirmed them by their escalation time to the back
   office (`escalate`: flagged, audit action "escalated");
3. queues one reminder to confirm for readings past `[held] confirm_remind_after_hours`;
4. splits every new notice of the `notices` outbox (gateway/store/schema_held.py) into one row
   per channel and recipient, and sends those, each claimed first so it goes once.

Who is told, and how: through the doors registered in `host.notifiers` (gateway/notify.py),
each naming its recipients of a reading (`Notifier.recipients`).
* "confirm_reminder" and "expired": through the reading's own channel: the Telegram chats linked
  to the account, the registered phone the SMS came from (Kannel sendsms), the cabinet (nothing
  sent: the page shows it). Readings taken by an operator, by telephone or by a device have no
  such channel: they are escalated and expire without a message.
* "committed" (billing's commit of a reading a person sent, not of a meter's own): through the
  doors that tell it (`Notifier.billing_notices`: the account's linked Telegram chats always; by
  SMS to the phone an SMS reading came from only when `[sms] billing_notices` is on) and the
  cabinet (its history shows when billing took each reading).
A door that is not `any_hour` (SMS) sends only 10:00-21:00 in the resident's time zone and never
on a public holiday (as the reminders of gateway/reminders.py); a notice outside those hours
waits for the next run inside; Telegram sends at any hour.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import held
from gateway.branches import Branch, Branches
from gateway.calendar import WorkCalendar
from gateway.config import Config
from gateway.held_lifecycle import HeldReceipt, escalate_at, held_receipts, remind_at
from gateway.intake import Clock
from gateway.metrics import Metrics
from gateway.model import Channel, Status
from gateway.notify import Notifiers, Reading, SendFailed
from gateway.privacy import mask_phones_in
from gateway.reminders import GIVE_UP_AFTER, JobStatus, account_place, notice_hours, repeat
from gateway.store.schema import accounts, readings
from gateway.store.schema_held import FANOUT, notices
from gateway.validation.explain import num, period_ru

if TYPE_CHECKING:
    from gateway.host import Host

log = logging.getLogger(__name__)

PAGE, PAGES = 500, 20  # notices looked at per query, and queries per run at most
MAX_ATTEMPTS = 5  # a notice that surely did not go is retried on later runs this many times
CABINET = "cabinet"  # shown on the cabinet's pages: recorded, nothing to send


@dataclass
class HeldJob:
    """Expires, escalates and reminds held readings; sends the notices of the `notices` outbox
    through the registered doors."""

    engine: AsyncEngine
    config: Config
    calendar: WorkCalendar
    clock: Clock
    senders: Notifiers  # the doors that reach residents (`host.notifiers`)
    metrics: Metrics | None = None
    status: JobStatus = field(default_factory=JobStatus)
    branches: Branches | None = None  # None: made from `config` around `calendar` (the default's)

    def __post_init__(self) -> None:
        if self.branches is None:
            self.branches = Branches(self.config, self.calendar)

    def _branch(self, stored: str | None) -> Branch:
        assert self.branches is not None
        return self.branches.of(stored)

    async def run_once(self) -> dict[str, int]:
        """One pass; returns what it did: expired, escalated, reminded (queued), sent."""
        now = self.status.last_run_at = self.clock()
        done = {"expired": 0, "escalated": 0, "reminded": 0, "sent": 0}
        async with self.engine.connect() as conn:
            waiting = await held_receipts(conn)
        for h in waiting:
            try:
                await self._advance(h, now, done)
            except held.NotHeld:  # gone meanwhile (a registry or database change): nothing to do
                continue
        if self.metrics is not None:
            for event in ("expired", "escalated", "reminded"):
                if done[event]:
                    self.metrics.held_events.labels(event).inc(done[event])
        await self._split(now)
        done["sent"] = await self._deliver()
        if any(done.values()):
            log.info("held readings: %s", ", ".join(f"{k} {v}" for k, v in done.items()))
        return done

    async def _advance(self, h: HeldReceipt, now: datetime, done: dict[str, int]) -> None:
        """Expire, escalate or queue the reminder of one held submission, whichever is due."""
        branch = self._branch(h.branch)
        if now >= branch.closes(h.period):
            done["expired"] += await held.expire(self.engine, h.receipt, now)
            return
        if h.verdict != Status.NEEDS_CONFIRMATION.value:
            return
        due = escalate_at(branch, self.config, h)
        if now >= due:
            why = f"not confirmed by {due.isoformat(timespec='minutes')}"
            done["escalated"] += await held.escalate(self.engine, h.receipt, now, why)
        elif now >= remind_at(self.config, h):
            done["reminded"] += await self._queue(h.receipt, "confirm_reminder", now)

    # -- the outbox ---------------------------------------------------------------------------

    async def _queue(self, receipt: int, kind: str, now: datetime) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                _insert_ignore(conn).values(
                    receipt=receipt, kind=kind, channel=FANOUT, recipient="", created_at=now, attempts=0
                )
            )
            return bool(result.rowcount)

    async def _split(self, now: datetime) -> None:
        """Each new notice -> one row per channel and recipient (or dropped: nobody to tell)."""
        after = 0
        for _ in range(PAGES):
            async with self.engine.connect() as conn:
                fresh = list(
                    (
                        await conn.execute(
                            select(notices.c.id, notices.c.receipt, notices.c.kind)
                            .where(
                                notices.c.channel == FANOUT, notices.c.done_at.is_(None), notices.c.id > after
                            )
                            .order_by(notices.c.id)
                            .limit(PAGE)
                        )
                    ).all()
                )
            await self._split_rows(fresh, now)
            if len(fresh) < PAGE:
                return
            after = fresh[-1].id

    async def _split_rows(self, fresh: list[Any], now: datetime) -> None:
        for row in fresh:
            async with self.engine.begin() as conn:
                info = await _reading(conn, row.receipt)
                if info is not None and row.kind == "committed" and not info.committed:
                    continue  # another zone of it is still in a batch: told when all are
                targets = [] if info is None else await self._recipients(conn, row.kind, info)
                for channel, recipient in targets:
                    shown = channel == CABINET
                    await conn.execute(
                        _insert_ignore(conn).values(
                            receipt=row.receipt,
                            kind=row.kind,
                            channel=channel,
                            recipient=recipient,
                            created_at=now,
                            attempts=0,
                            done_at=now if shown else None,
                            outcome="shown" if shown else None,
                        )
                    )
                    if shown:
                        self._count(row.kind, channel, "shown")
                await conn.execute(
                    update(notices)
                    .where(notices.c.id == row.id)
                    .values(done_at=now, outcome="split" if targets else "dropped")
                )

    async def _recipients(self, conn: AsyncConnection, kind: str, info: Reading) -> list[tuple[str, str]]:
        """Whom to tell: of "committed", every door that tells it; of the others, the reading's own."""
        out: list[tuple[str, str]] = []
        for door in self.senders.doors:
            if door.billing_notices if kind == "committed" else door.channel == info.channel:
                out += [(door.channel, r) for r in await door.recipients(conn, info)]
        if info.channel == Channel.CABINET.value:  # (every reading's history shows when billing took it)
            out.append((CABINET, ""))
        return out

    async def _deliver(self) -> int:
        after = sent = 0
        failures: dict[str, int] = {}  # consecutive failures by channel in this run
        for _ in range(PAGES):
            async with self.engine.connect() as conn:
                due = list(
                    (
                        await conn.execute(
                            select(notices.c.id, notices.c.receipt, notices.c.kind, notices.c.channel)
                            .add_columns(notices.c.recipient)
                            .where(
                                notices.c.done_at.is_(None),
                                notices.c.claimed_at.is_(None),
                                notices.c.channel != FANOUT,
                                notices.c.id > after,
                            )
                            .order_by(notices.c.id)
                            .limit(PAGE)
                        )
                    ).all()
                )
            sent += await self._deliver_rows(due, failures)
            if len(due) < PAGE:
                break
            after = due[-1].id
        return sent

    async def _deliver_rows(self, due: list[Any], failures: dict[str, int]) -> int:
        sent = 0
        for row in due:
            sender = self.senders.get(row.channel)
            if sender is None or failures.get(row.channel, 0) >= GIVE_UP_AFTER:
                continue  # the channel is off, or down in this run
            async with self.engine.connect() as conn:
                info = await _reading(conn, row.receipt)
                place = await account_place(conn, info.account_id) if info else (None, None)
            if info is None or (row.kind == "confirm_reminder" and info.verdict != Status.NEEDS_CONFIRMATION):
                await self._finish(row.id, "dropped", None)  # decided meanwhile: nothing to remind of
                self._count(row.kind, row.channel, "dropped")
                continue
            branch_id, zone = place
            if not sender.any_hour and not notice_hours(self._branch(branch_id), zone, self.clock()):
                continue  # a later run sends it, once it is daytime there
            if not await self._claim(row.id):
                continue  # another gateway process has it
            try:
                if row.kind == "confirm_reminder":
                    await sender.send(
                        row.recipient, sender.confirm_text(_values(info), info.account), info.receipt
                    )
                else:
                    await sender.send(row.recipient, _text(row.kind, info))
            except SendFailed as exc:
                failures[row.channel] = failures.get(row.channel, 0) + 1
                error = mask_phones_in(str(exc))[:500]
                self.status.failed += 1
                self.status.last_error = error
                log.warning(
                    "%s notice %s of receipt %s failed: %s", row.channel, row.kind, row.receipt, error
                )
                await self._give_back(row.id, error, exc.surely_not_sent)
                continue
            failures[row.channel] = 0
            await self._finish(row.id, "sent", None)
            self._count(row.kind, row.channel, "sent")
            self.status.sent += 1
            self.status.last_error = None
            sent += 1
        return sent

    async def _claim(self, notice_id: int) -> bool:
        async with self.engine.begin() as conn:
            claimed = await conn.execute(
                update(notices)
                .where(notices.c.id == notice_id, notices.c.claimed_at.is_(None), notices.c.done_at.is_(None))
                .values(claimed_at=self.clock(), attempts=notices.c.attempts + 1)
            )
            return claimed.rowcount == 1

    async def _give_back(self, notice_id: int, error: str, surely_not_sent: bool) -> None:
        """A notice that surely did not go is tried again later (up to MAX_ATTEMPTS); one that may
        have gone is not, so nobody gets it twice."""
        async with self.engine.begin() as conn:
            attempts = (
                await conn.execute(
                    select(notices.c.attempts, notices.c.kind, notices.c.channel).where(
                        notices.c.id == notice_id
                    )
                )
            ).one()
            if surely_not_sent and attempts.attempts < MAX_ATTEMPTS:
                await conn.execute(
                    update(notices).where(notices.c.id == notice_id).values(claimed_at=None, error=error)
                )
                return
        await self._finish(notice_id, "failed", error)
        self._count(attempts.kind, attempts.channel, "failed")

    async def _finish(self, notice_id: int, outcome: str, error: str | None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(notices)
                .where(notices.c.id == notice_id)
                .values(done_at=self.clock(), outcome=outcome, error=error)
            )

    def _count(self, kind: str, channel: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.notices.labels(kind, channel, outcome).inc()

    async def run_forever(self, every_seconds: float) -> None:
        await repeat(self.run_once, every_seconds, self.status, "held-readings")


def _insert_ignore(conn: AsyncConnection) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(notices).on_conflict_do_nothing()


async def _reading(conn: AsyncConnection, receipt: int) -> Reading | None:
    rows = (
        await conn.execute(
            select(
                readings.c.account_id,
                accounts.c.number,
                readings.c.channel,
                readings.c.period,
                readings.c.verdict,
                readings.c.zone,
                readings.c.value,
                readings.c.committed_at,
            )
            .join(accounts, accounts.c.id == readings.c.account_id)
            .where(readings.c.inbound_id == receipt)
            .order_by(readings.c.zone)
        )
    ).all()
    if not rows:
        return None
    first = rows[0]
    return Reading(
        receipt=receipt,
        account_id=first.account_id,
        account=first.number,
        channel=first.channel,
        period=first.period,
        verdict=first.verdict,
        values={r.zone: Decimal(r.value) for r in rows},
        committed=all(r.committed_at is not None for r in rows),
    )


def _values(info: Reading) -> str:
    if list(info.values) == ["T"]:
        return num(info.values["T"])
    return ", ".join(f"{zone} {num(value)}" for zone, value in sorted(info.values.items()))


def _text(kind: str, info: Reading) -> str:
    """A notice every door words alike ("committed", "expired"; one SMS part where it goes by SMS)."""
    month = period_ru(info.period)
    if kind == "committed":
        return f"Показания за {month} переданы в расчёт: л/с {info.account}, {_values(info)}, квитанция № {info.receipt}."
    return (
        f"Показания {_values(info)} (л/с {info.account}) за {month} не учтены: их не подтвердили "
        "до закрытия приёма."
    )


_JOBS: weakref.WeakKeyDictionary[Host, HeldJob] = weakref.WeakKeyDictionary()


def held_job(host: Host) -> HeldJob:
    """The gateway's held-readings job (tests run its passes themselves on a controlled clock)."""
    return _JOBS[host]


def install(host: Host, app: web.Application) -> None:
    """Run the held-readings job as a background task of every gateway."""
    job = _JOBS[host] = HeldJob(
        host.engine,
        host.config,
        host.calendar,
        host.clock,
        host.notifiers,
        host.metrics,
        branches=host.branches,
    )

    async def held_readings(host: Host) -> None:
        await job.run_forever(host.config.held.check_seconds)

    host.background.append(held_readings)
    host.health_probes["held"] = job.status.probe
