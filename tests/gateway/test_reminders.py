"""Reminders: due at the window's start and on its last day, 10:00-21:00 local, never on public
holidays, never twice, never to someone who already submitted or answered "стоп"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.sms.kannel import KannelSendsms
from adapters.sms.tables import opt_out
from gateway.calendar import WorkCalendar
from gateway.config import Config
from gateway.intake import Intake
from gateway.model import Channel, Status, Submission
from gateway.notify import DueReminder, SendFailed
from gateway.registry import import_registry
from gateway.reminders import ReminderJob, due_reminder
from gateway.service import Gateway
from gateway.store.schema_reminders import reminder_log
from tests.conftest import FakeClock, make_config

MSK = 3  # Moscow is UTC+3 all year


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    """A moment in November 2026, given in Moscow time."""
    return datetime(2026, month, day, hour - MSK, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (at(14, 12), None),  # before the window (15th-25th)
        (at(15, 12), "window_start"),  # a Sunday, but no public holiday
        (at(20, 12), "window_start"),  # still due if it could not go earlier
        (at(25, 12), "last_day"),
        (at(26, 12), None),  # cut-off: the next period's window is not open yet
    ],
)
def test_which_reminder_is_due(moment: datetime, expected: str | None) -> None:
    due = due_reminder(WorkCalendar("Europe/Moscow"), 15, 26, moment)
    assert (due.kind if due else None) == expected
    if due:
        assert due.period == "2026-11" and due.window_end == date(2026, 11, 25)


def test_last_day_moves_before_a_holiday(tmp_path: Path) -> None:
    override = tmp_path / "holidays.toml"
    override.write_text('holidays = ["2026-11-25"]\n', encoding="utf-8")
    calendar = WorkCalendar("Europe/Moscow", override)
    due = due_reminder(calendar, 15, 26, at(24, 12))
    assert due is not None and due.kind == "last_day"
    assert due_reminder(calendar, 15, 26, at(25, 12)) is None
    # A window of 1-9 January: 1-8 are public holidays, so the 9th is its only (and last) day.
    new_year = WorkCalendar("Europe/Moscow")
    assert not new_year.quiet_hours_ok(datetime(2027, 1, 3, 9, tzinfo=UTC))
    due = due_reminder(new_year, 1, 10, datetime(2027, 1, 9, 9, tzinfo=UTC))
    assert due is not None and due.kind == "last_day"


class FakeNotifier:
    """Records what would be sent; fails on demand."""

    channel = "sms"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail: SendFailed | None = None
        self.inner = KannelSendsms(Config().sms)

    async def contacts(self, engine: AsyncEngine, accounts: Mapping[int, str]) -> dict[str, list[int]]:
        return await self.inner.contacts(engine, accounts)

    def text(self, due: DueReminder, account_numbers: list[str]) -> str:
        return self.inner.text(due, account_numbers)

    async def send(self, recipient: str, text: str) -> None:
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        self.sent.append((recipient, text))

    async def close(self) -> None:
        pass


@pytest.fixture
async def world(
    engine: AsyncEngine, db_url: str, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[Intake, Config, WorkCalendar]]:
    config = make_config(db_url, tmp_path)
    await import_registry(engine, config.registry.csv or "")
    calendar = WorkCalendar(config.calendar.timezone)
    intake = Intake(engine, config, calendar, clock=clock)
    await intake.start()
    yield intake, config, calendar
    await intake.stop()


def job(
    engine: AsyncEngine,
    world: tuple[Intake, Config, WorkCalendar],
    clock: FakeClock,
    *notifiers: FakeNotifier,
) -> ReminderJob:
    _, config, calendar = world
    return ReminderJob(engine, config, calendar, clock, list(notifiers))


async def test_reminds_those_who_have_not_submitted(
    engine: AsyncEngine, world: tuple[Intake, Config, WorkCalendar], clock: FakeClock
) -> None:
    intake = world[0]
    clock.now = at(16, 12)
    done = await intake.submit(
        Submission(Channel.CABINET, clock(), "x", account="1000002", values={"T1": "1", "T2": "1"})
    )
    assert done.status is Status.ACCEPTED
    rejected = await intake.submit(
        Submission(Channel.CABINET, clock(), "x", account="1000001", values={"T": "abc"})
    )
    assert rejected.status is Status.REJECTED  # a rejected reading is not a submitted one
    await opt_out(engine, "+79161234569", clock())
    notifier = FakeNotifier()
    assert await job(engine, world, clock, notifier).run_once() == 2
    assert sorted(notifier.sent) == [
        ("+79031112233", "Показания по л/с 1000003, 1000005: до 25.11. Пример: 1000003 12345"),
        ("+79161234567", "Передайте показания по л/с 1000001 до 25.11. Пример: 1000001 12345"),
    ]
    # Never twice: not on the next run, not from another process's job.
    clock.advance(hours=2)
    assert await job(engine, world, clock, notifier).run_once() == 0
    assert len(notifier.sent) == 2
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(reminder_log.c.recipient, reminder_log.c.kind, reminder_log.c.sent_at))
        ).all()
    assert {(r.recipient, r.kind) for r in rows} == {
        ("+79031112233", "window_start"),
        ("+79161234567", "window_start"),
    }
    assert all(r.sent_at is not None for r in rows)

    # The last day: whoever still has not submitted is reminded once more.
    await intake.submit(
        Submission(Channel.SMS, clock(), "+79161234567", account="1000001", values={"T": "10"})
    )
    clock.now = at(25, 10)
    assert await job(engine, world, clock, notifier).run_once() == 1
    assert notifier.sent[-1] == (
        "+79031112233",
        "Сегодня последний день приёма показаний по л/с 1000003, 1000005",
    )


async def test_concurrent_jobs_send_each_reminder_once(
    engine: AsyncEngine, world: tuple[Intake, Config, WorkCalendar], clock: FakeClock
) -> None:
    clock.now = at(17, 12)
    a, b = FakeNotifier(), FakeNotifier()
    sent = await asyncio.gather(
        job(engine, world, clock, a).run_once(), job(engine, world, clock, b).run_once()
    )
    recipients = sorted(r for r, _ in a.sent + b.sent)
    assert recipients == ["+79031112233", "+79161234567", "+79161234568", "+79161234569"]
    assert sum(sent) == 4


@pytest.mark.parametrize("moment", [at(17, 9, 59), at(17, 21, 0), at(14, 12), at(4, 12, month=12)])
async def test_nothing_outside_sending_hours(
    engine: AsyncEngine, world: tuple[Intake, Config, WorkCalendar], clock: FakeClock, moment: datetime
) -> None:
    clock.now = moment
    notifier = FakeNotifier()
    assert await job(engine, world, clock, notifier).run_once() == 0
    assert notifier.sent == []


async def test_each_resident_is_reminded_in_their_own_time_zone(
    engine: AsyncEngine, world: tuple[Intake, Config, WorkCalendar], clock: FakeClock, tmp_path: Path
) -> None:
    # Account 1000001 lives in Yekaterinburg (UTC+5): its 10:00 is 08:00 in Moscow.
    registry = tmp_path / "zones.csv"
    registry.write_text(
        "account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address,timezone\n"
        "1000001,M-1,Меркурий 201,T,6,+79161234567,10,Екатеринбург,Asia/Yekaterinburg\n",
        encoding="utf-8",
    )
    report = await import_registry(engine, registry)
    assert report.changed == 1 and not report.refused
    clock.now = at(17, 8, 30)  # 08:30 Moscow, 10:30 Yekaterinburg
    notifier = FakeNotifier()
    assert await job(engine, world, clock, notifier).run_once() == 1
    assert [r for r, _ in notifier.sent] == ["+79161234567"]
    clock.now = at(17, 19, 30)  # 19:30 Moscow, 21:30 Yekaterinburg: the rest, not the Urals
    assert await job(engine, world, clock, notifier).run_once() == 3
    assert "+79161234567" not in [r for r, _ in notifier.sent[1:]]


async def test_no_reminders_on_a_public_holiday(
    engine: AsyncEngine, world: tuple[Intake, Config, WorkCalendar], clock: FakeClock, tmp_path: Path
) -> None:
    _, config, _ = world
    override = tmp_path / "holidays.toml"
    override.write_text('holidays = ["2026-11-17"]\n', encoding="utf-8")
    clock.now = at(17, 12)
    notifier = FakeNotifier()
    holiday_job = ReminderJob(engine, config, WorkCalendar("Europe/Moscow", override), clock, [notifier])
    assert await holiday_job.run_once() == 0
    clock.now = at(18, 12)
    assert await holiday_job.run_once() == 4


async def test_failed_sends_are_retried_only_when_surely_not_sent(
    engine: AsyncEngine, world: tuple[Intake, Config, WorkCalendar], clock: FakeClock
) -> None:
    clock.now = at(17, 12)
    notifier = FakeNotifier()
    notifier.fail = SendFailed("connection refused", surely_not_sent=True)
    reminders = job(engine, world, clock, notifier)
    assert await reminders.run_once() == 0
    assert reminders.status.probe()["status"] == "degraded"
    notifier.fail = None
    assert await reminders.run_once() == 4  # given back, so sent now
    assert reminders.status.probe()["status"] == "ok"

    clock.now = at(25, 12)
    notifier.fail = SendFailed("timeout after the request went out", surely_not_sent=False)
    assert await reminders.run_once() == 0  # three failures in a row: the channel is down, stop
    notifier.fail = None
    assert await reminders.run_once() == 1  # only the one not tried: the others may have gone
    assert await reminders.run_once() == 0
    assert len(notifier.sent) == 5


@pytest.fixture
async def fake_sendsms() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A stand-in for Kannel's /cgi-bin/sendsms: records each query, answers as Kannel does."""
    got: list[dict[str, str]] = []

    async def sendsms(request: web.Request) -> web.Response:
        got.append(dict(request.query))
        if request.query.get("password") != "pw":
            return web.Response(status=403, text="Authorization failed for sendsms")
        return web.Response(status=202, text="0: Accepted for delivery")

    app = web.Application()
    app.router.add_get("/cgi-bin/sendsms", sendsms)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/cgi-bin/sendsms?username=gw&password=pw&from=7377", got
    await runner.cleanup()


async def test_kannel_sendsms_request(fake_sendsms: tuple[str, list[dict[str, str]]]) -> None:
    url, got = fake_sendsms
    config = Config().sms.model_copy(update={"sendsms_url": url})
    sender = KannelSendsms(config)
    try:
        await sender.send("+79161234567", "Передайте показания")
        assert got == [
            {
                "username": "gw",
                "password": "pw",
                "from": "7377",
                "to": "+79161234567",
                "text": "Передайте показания",
                "charset": "UTF-8",
                "coding": "2",
            }
        ]
        sender.url = url.replace("password=pw", "password=bad")
        with pytest.raises(SendFailed) as refused:
            await sender.send("+79161234567", "x")
        assert refused.value.surely_not_sent and "403" in str(refused.value)
        sender.url = "http://127.0.0.1:9/cgi-bin/sendsms?x=1"  # nothing listens on the discard port
        with pytest.raises(SendFailed) as down:
            await sender.send("+79161234567", "x")
        assert down.value.surely_not_sent
    finally:
        await sender.close()


async def test_gateway_runs_the_reminder_job(
    db_url: str, tmp_path: Path, clock: FakeClock, fake_sendsms: tuple[str, list[dict[str, str]]]
) -> None:
    url, got = fake_sendsms
    clock.now = at(17, 12)
    config = make_config(db_url, tmp_path, sms={"sendsms_url": url, "reminder_check_seconds": 0.05})
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    try:
        for _ in range(200):
            if len(got) >= 4:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # later runs must not add any
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{gateway.port}/healthz") as resp:
                probe = (await resp.json())["checks"]["reminders"]
    finally:
        await gateway.stop()
    assert sorted(q["to"] for q in got) == ["+79031112233", "+79161234567", "+79161234568", "+79161234569"]
    assert all(q["coding"] == "2" and "до 25.11" in q["text"] for q in got)
    assert probe["status"] == "ok" and probe["sent"] == 4
    assert urlsplit(url).path == "/cgi-bin/sendsms" and parse_qs(urlsplit(url).query)["username"] == ["gw"]
