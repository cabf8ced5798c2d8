"""Reminders to submit readings: at the start of the acceptance window and on its last day.

A core job of the gateway (gateway/service.py's CORE_JOBS), sending through the doors registered
in `host.notifiers` that take reminders (gateway/notify.py: SMS when `[sms] sendsms_url` is set
and `[sms] reminders` is on; Telegram when `[telegram] reminders` is). Every `[sms]
reminder_check_seconds` it asks:

* Each branch on its own (gateway/branches.py): its window, its holidays, its zone, its
  contacts (named in its reminders' text).
* Is it a sending hour? Only 10:00-21:00 in the resident's time zone (the account's `timezone`
  from the registry, else its branch's zone) and never on a public holiday of its branch
  (`WorkCalendar.quiet_hours_ok`).
* Which reminder is due? The window of the branch's current period runs from `window_start_day`
  to the day before `cutoff_day`. "window_start" goes on the first day of the window on which
  sending is allowed (or, after an outage, on the next one); "last_day" on the window's last
  day, or on the last day before it that is not a public holiday.
* To whom? The branch's accounts with an active meter that has no reading of this period yet (a
  rejected reading does not count; one from any channel or device does), through each door's
  contacts for them (SMS: the registry's phones, less those that answered "стоп").

Each reminder (channel, recipient, period, kind) is claimed in `reminder_log` before it is sent,
so it never goes twice, whichever gateway process gets there first; a claim whose sending
surely failed is given back and retried on a later run. A recipient with several accounts gets
one message naming them all, in the door's words (`Reminds.text`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.branches import Branch, Branches
from gateway.calendar import WorkCalendar, billing_period, period_window
from gateway.config import Config
from gateway.intake import Clock
from gateway.notify import DueReminder, Reminds, SendFailed
from gateway.privacy import mask_phones_in
from gateway.store.schema import accounts
from gateway.store.schema_reminders import (
    accounts_without_reading,
    claim_reminder,
    release_reminder,
    reminded,
    reminder_sent,
)

if TYPE_CHECKING:
    from gateway.host import Host

log = logging.getLogger(__name__)

START_HOUR, END_HOUR = 10, 21  # local sending hours, [10:00, 21:00)
GIVE_UP_AFTER = 3  # consecutive failures of one channel in a run: it is down, try next run


def due_reminder(
    calendar: WorkCalendar, window_start_day: int, cutoff_day: int, now: datetime
) -> DueReminder | None:
    """Which reminder is due on the local day of `now` (ignoring the hour), if any."""
    today = calendar.local_date(now)
    period = billing_period(today, window_start_day, cutoff_day)
    start, end = period_window(period, window_start_day, cutoff_day)
    if not start <= today <= end:
        return None
    day, sendable = start, []
    while day <= end:
        if not calendar.is_public_holiday(day):
            sendable.append(day)
        day += timedelta(days=1)
    if not sendable or today > sendable[-1]:
        return None
    kind = "last_day" if today == sendable[-1] else "window_start"
    return DueReminder(period, kind, end, today)


def notice_hours(branch: Branch, zone: str | None, now: datetime) -> bool:
    """May an SMS or phone notice go now: 10:00-21:00 and not a public holiday of the account's
    branch, in `zone` (the account's own) or the branch's."""
    return branch.notice_calendar(zone).quiet_hours_ok(now, START_HOUR, END_HOUR)


async def repeat(
    run_once: Callable[[], Awaitable[object]], every_seconds: float, status: JobStatus, what: str
) -> None:
    """Run a job's pass every `every_seconds` until cancelled; a failed pass is logged and shown
    on /healthz, and the next one tries again (the database may be away for a while)."""
    while True:
        try:
            await run_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            status.last_error = type(exc).__name__
            log.exception("%s run failed", what)
        await asyncio.sleep(every_seconds)


@dataclass
class JobStatus:
    """What /healthz tells about the reminder job."""

    last_run_at: datetime | None = None
    sent: int = 0
    failed: int = 0
    last_error: str | None = None

    def probe(self) -> dict[str, Any]:
        return {
            "status": "degraded" if self.last_error else "ok",
            "last_run_at": self.last_run_at.isoformat() if self.last_run_at else None,
            "sent": self.sent,
            "failed": self.failed,
            "last_error": self.last_error,
        }


@dataclass
class ReminderJob:
    """Sends the reminders that are due, through every door given (those of `host.notifiers`
    that take reminders)."""

    engine: AsyncEngine
    config: Config
    calendar: WorkCalendar  # the default branch's
    clock: Clock
    notifiers: list[Reminds]
    status: JobStatus = field(default_factory=JobStatus)
    branches: Branches | None = None  # None: made from `config` around `calendar`

    def __post_init__(self) -> None:
        if self.branches is None:
            self.branches = Branches(self.config, self.calendar)

    async def run_once(self) -> int:
        """One pass: send what is due now in each branch; returns how many reminders went out."""
        now = self.status.last_run_at = self.clock()
        if not self.notifiers:
            return 0
        assert self.branches is not None
        sent = 0
        for branch in self.branches:
            due = due_reminder(branch.calendar, branch.window_start_day, branch.cutoff_day, now)
            if due is None:
                continue
            due = replace(due, contacts=branch.contacts)
            async with self.engine.connect() as conn:
                missing = await accounts_without_reading(conn, due.period, self.branches.members(branch))
                zones = await account_zones(conn, list(missing))
            if not missing or not any(notice_hours(branch, z, now) for z in {None, *zones.values()}):
                continue
            for notifier in self.notifiers:
                sent += await self._run_channel(notifier, branch, due, missing, zones)
        return sent

    async def _run_channel(
        self,
        notifier: Reminds,
        branch: Branch,
        due: DueReminder,
        missing: dict[int, str],
        zones: dict[int, str],
    ) -> int:
        contacts = await notifier.contacts(self.engine, missing)
        async with self.engine.connect() as conn:
            done = await reminded(conn, notifier.channel, due.period, due.kind)
        sent = failures = 0
        for recipient in sorted(set(contacts) - done):
            # The resident's own zone: of the first of their accounts that has one.
            zone = next((zones[a] for a in contacts[recipient] if a in zones), None)
            if not notice_hours(branch, zone, self.clock()):
                continue  # a later pass sends it, once it is daytime there
            where = {
                "channel": notifier.channel,
                "recipient": recipient,
                "period": due.period,
                "kind": due.kind,
            }
            numbers = await claim_reminder(
                self.engine, **where, account_ids=contacts[recipient], now=self.clock()
            )
            if numbers is None:  # claimed elsewhere, or the readings came in meanwhile
                continue
            try:
                await notifier.send(recipient, notifier.text(due, numbers))
            except SendFailed as exc:
                self.status.failed += 1
                self.status.last_error = mask_phones_in(str(exc))
                log.warning("%s reminder to %s failed: %s", notifier.channel, recipient, exc)
                if exc.surely_not_sent:
                    await release_reminder(self.engine, **where)
                failures += 1
                if failures >= GIVE_UP_AFTER:
                    break
                continue
            failures = 0
            await reminder_sent(self.engine, **where, now=self.clock())
            sent += 1
            self.status.sent += 1
            self.status.last_error = None
        if sent:
            log.info("%s %s reminders of %s sent: %d", notifier.channel, due.kind, due.period, sent)
        return sent

    async def run_forever(self, every_seconds: float) -> None:
        await repeat(self.run_once, every_seconds, self.status, "reminder")


async def account_zones(conn: AsyncConnection, account_ids: list[int]) -> dict[int, str]:
    """The accounts among `account_ids` whose registry row names a time zone of their own."""
    if not account_ids:
        return {}
    rows = await conn.execute(
        select(accounts.c.id, accounts.c.timezone).where(
            accounts.c.id.in_(account_ids), accounts.c.timezone.is_not(None)
        )
    )
    return {r.id: r.timezone for r in rows}


async def account_place(conn: AsyncConnection, account_id: int) -> tuple[str | None, str | None]:
    """An account's branch and own time zone as the registry gives them (None: not given)."""
    row = (
        await conn.execute(select(accounts.c.branch, accounts.c.timezone).where(accounts.c.id == account_id))
    ).first()
    return (row.branch, row.timezone) if row is not None else (None, None)


def install(host: Host, app: web.Application) -> None:
    """Run the reminder job as a background task; it idles when no door takes reminders."""
    status = JobStatus()

    async def reminders(host: Host) -> None:
        notifiers = host.notifiers.reminding()
        if not notifiers:
            return
        job = ReminderJob(
            host.engine, host.config, host.calendar, host.clock, list(notifiers), status, host.branches
        )
        await job.run_forever(host.notifiers.reminder_check_seconds)

    host.background.append(reminders)
    host.health_probes["reminders"] = lambda: (
        status.probe() if host.notifiers.reminding() else {"status": "disabled"}
    )
