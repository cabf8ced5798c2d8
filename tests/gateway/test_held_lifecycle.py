"""Held readings through their whole life on a controlled clock, against a real gateway on both
databases: reminded once through their channel (SMS via a sendsms receiver, Telegram via the fake
Bot API), escalated to the back office, released late or expired with the sender told; the SLA
view, /metrics and the back office's queue show them with their due times."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from sqlalchemy import insert, select

from adapters.telegram.tables import telegram_links
from gateway.held_job import HeldJob, held_job
from gateway.model import Channel, Status, Submission
from gateway.store.schema import audit, readings
from tests.adapters.telegram.fake_bot_api import TOKEN, FakeBotApi, buttons
from tests.adapters.web.test_cabinet import OPERATOR, OPERATOR_PASSWORD, Web, start_web
from tests.conftest import BILLING_TOKEN, FakeClock

MSK = 3
KEY = "test-kannel-key"
CHAT = 501
REFUSALS: list[int] = []  # statuses the sendsms receiver answers next, instead of 202


def msk(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in November 2026, given in Moscow time."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) - timedelta(hours=MSK)


@pytest.fixture
async def sendsms() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A stand-in for Kannel's /cgi-bin/sendsms: records each message, answers as Kannel does."""
    got: list[dict[str, str]] = []
    REFUSALS.clear()

    async def handler(request: web.Request) -> web.Response:
        got.append(dict(request.query))
        if REFUSALS:
            return web.Response(status=REFUSALS.pop(0), text="Queue full")
        return web.Response(status=202, text="0: Accepted for delivery")

    app = web.Application()
    app.router.add_get("/cgi-bin/sendsms", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/cgi-bin/sendsms?username=gw&password=pw", got
    await runner.cleanup()


@pytest.fixture
async def bot() -> AsyncIterator[FakeBotApi]:
    api = FakeBotApi()
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def desk(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    sendsms: tuple[str, list[dict[str, str]]],
    bot: FakeBotApi,
) -> AsyncIterator[Web]:
    """A gateway with the Kannel route, SMS notices, Telegram and the operators' desk; the job's
    own timer is set far off: the tests run its passes on their clock."""
    # The job's first pass runs at start-up with the clock of that moment: before every test's story.
    clock.now = datetime(2026, 8, 1, tzinfo=UTC)
    w = await start_web(
        db_url,
        tmp_path,
        clock,
        sms={"kannel_key": KEY, "sendsms_url": sendsms[0], "reminders": False},
        telegram={
            "enabled": True,
            "token": TOKEN,
            "mode": "webhook",
            "webhook_secret": "test-webhook-secret_1",
            "api_base": bot.base,
            "reminders": False,
        },
        held={"check_seconds": 3600},
        database={"auto_upgrade": False},
    )
    yield w
    await w.close()


def job(w: Web) -> HeldJob:
    return held_job(w.gateway)


async def history(w: Web, account: str = "1000001") -> None:
    """Three readings a month apart, about 10 kWh a day, the last on 17 October."""
    for month, value in ((8, "1000"), (9, "1300"), (10, "1600")):
        w.clock.now = datetime(2026, month, 18 if month == 8 else 17, 7, 0, tzinfo=UTC)
        verdict = await w.submit(account, {"T": value})
        assert verdict.status is Status.ACCEPTED, verdict


async def sms(w: Web, text: str, phone: str = "+79161234567") -> str:
    params = {"from": phone, "to": "7377", "text": text, "id": f"m-{w.clock.now.timestamp()}", "key": KEY}
    c = w.client()
    async with c.http.get(w.base + "/channels/sms/kannel", params=params) as resp:
        assert resp.status == 200
        return await resp.text()


def held_items(view: dict[str, Any]) -> list[dict[str, Any]]:
    """The SLA view's readings less the accepted history readings billing has not taken."""
    return [r for r in view["readings"] if r["state"] != "pending"]


async def sla(w: Web) -> dict[str, Any]:
    c = w.client()
    headers = {"Authorization": f"Bearer {BILLING_TOKEN}"}
    async with c.http.get(w.base + "/api/v1/billing/sla", headers=headers) as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def metric(w: Web, name: str, **labels: str) -> float:
    page = await w.client().get("/metrics")
    shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))  # as exposed: sorted
    pattern = re.escape(name + (f"{{{shown}}}" if labels else "")) + r" (\S+)"
    found = re.search(r"^" + pattern + "$", page.text, re.M)
    return float(found.group(1)) if found else 0.0


async def verdict_of(w: Web, receipt: int) -> tuple[str, list[str]]:
    async with w.engine.connect() as conn:
        row = (
            await conn.execute(
                select(readings.c.verdict, readings.c.reasons).where(readings.c.inbound_id == receipt)
            )
        ).first()
    assert row is not None
    return row.verdict, [r["code"] for r in orjson.loads(row.reasons)]


async def test_sms_reading_reminded_once_escalated_then_expired(
    desk: Web, sendsms: tuple[str, list[dict[str, str]]]
) -> None:
    w, (_, got) = desk, sendsms
    await history(w)
    w.clock.now = msk(16, 10)  # a Monday
    reply = await sms(w, "2400")
    assert "ответьте ДА" in reply
    [item] = held_items(await sla(w))
    async with w.engine.connect() as conn:
        receipt = (
            await conn.execute(select(readings.c.inbound_id).where(readings.c.id == item["reading_id"]))
        ).scalar_one()
    assert item["state"] == "needs_confirmation" and item["overdue"] is False
    assert item["due_at"] == msk(18, 0).isoformat()  # the end of the next working day, from receipt
    assert await metric(w, "gateway_readings_held", branch="default", status="needs_confirmation") == 1

    assert (await job(w).run_once())["reminded"] == 0 and got == []
    w.clock.now = msk(16, 16)  # 6 hours on: one reminder, by SMS to the phone it came from
    assert (await job(w).run_once())["sent"] == 1
    assert [q["to"] for q in got] == ["+79161234567"]
    assert "ждут подтверждения" in got[0]["text"] and "ответьте ДА" in got[0]["text"]
    w.clock.now = msk(16, 20)
    assert await job(w).run_once() == {"expired": 0, "escalated": 0, "reminded": 0, "sent": 0}
    assert len(got) == 1  # reminded once

    w.clock.now = msk(17, 10)  # 24 hours after receipt, still unanswered: the back office has it
    assert (await job(w).run_once())["escalated"] == 1
    assert await verdict_of(w, receipt) == ("flagged", ["unexpected_consumption", "escalated"])
    async with w.engine.connect() as conn:
        trail = (await conn.execute(select(audit.c.action, audit.c.actor, audit.c.comment))).all()
    assert [(a, b) for a, b, _ in trail] == [("escalated", "held-job")]
    assert "not confirmed by" in (trail[0].comment or "")
    assert [r["state"] for r in held_items(await sla(w))] == ["flagged"]
    assert await metric(w, "gateway_readings_held", branch="default", status="flagged") == 1
    assert await metric(w, "gateway_readings_held", branch="default", status="needs_confirmation") == 0
    w.clock.now = msk(18, 1)
    assert await metric(w, "gateway_readings_held_overdue", branch="default", status="flagged") == 1
    assert held_items(await sla(w))[0]["late_by"] == "hold"

    w.clock.now = msk(26, 0, 30)  # the period closed undecided: expired; the SMS waits for daytime
    assert (await job(w).run_once())["expired"] == 1
    assert await verdict_of(w, receipt) == ("rejected", ["unexpected_consumption", "escalated", "expired"])
    assert len(got) == 1
    assert held_items(await sla(w)) == []
    w.clock.now = msk(26, 10, 30)
    assert (await job(w).run_once())["sent"] == 1
    assert got[1]["to"] == "+79161234567" and "не учтены" in got[1]["text"]
    assert await metric(w, "gateway_held_events_total", event="expired") == 1
    assert (
        await metric(w, "gateway_resident_notices_total", kind="expired", channel="sms", outcome="sent") == 1
    )


async def test_telegram_reminder_escalation_late_release_and_commit_notice(
    desk: Web, bot: FakeBotApi
) -> None:
    w = desk
    await history(w)
    async with w.engine.begin() as conn:
        await conn.execute(
            insert(telegram_links).values(
                chat_id=CHAT,
                account_id=1,
                user_id=CHAT,
                method="contact",
                linked_at=w.clock(),
                reminders=True,
            )
        )
    w.clock.now = msk(16, 10)
    unusual = await w.gateway.intake.submit(
        Submission(Channel.TELEGRAM, w.clock(), str(CHAT), account="1000001", values={"T": "2400"})
    )
    assert unusual.status is Status.NEEDS_CONFIRMATION and unusual.receipt is not None
    await history(w, "1000005")
    w.clock.now = msk(17, 3)  # a device's unusual reading, flagged for the back office, due a day later
    other = await w.gateway.intake.submit(
        Submission(Channel.DEVICE, w.clock(), "dev", meter_serial="M-5", values={"T": "2400"})
    )
    assert other.status is Status.FLAGGED

    w.clock.now = msk(16, 16)
    assert (await job(w).run_once())["sent"] == 1
    [reminder] = bot.sent(CHAT)
    assert "ждут вашего подтверждения" in reminder["text"]
    assert ("Подтвердить", f"cf:{unusual.receipt}") in buttons(reminder)
    w.clock.now = msk(17, 10)
    assert (await job(w).run_once())["escalated"] == 1
    assert len(bot.sent(CHAT)) == 1

    staff = w.client()
    await staff.operator_sign_in(OPERATOR.login, OPERATOR_PASSWORD)
    page = await staff.get("/operator/queue")
    first, second = page.text.index(f"№ {unusual.receipt}<"), page.text.index(f"№ {other.receipt}<")
    assert first < page.text.index("осталось 14 ч") < second < page.text.index("осталось 38 ч")
    w.clock.now = msk(18, 10)  # past the first one's due time
    page = await staff.get("/operator/queue")
    first, second = page.text.index(f"№ {unusual.receipt}<"), page.text.index(f"№ {other.receipt}<")
    assert first < page.text.index("просрочено на 10 ч") < second < page.text.index("осталось 14 ч")
    page = await staff.post(
        f"/operator/receipts/{unusual.receipt}/review",
        {"decision": "accept", "comment": "проверено по фото", "back": "/operator/queue"},
    )
    assert page.status == 200

    view = await sla(w)
    [item] = [r for r in view["readings"] if r["account"] == "1000001" and r["value"] == "2400"]
    assert item["state"] == "pending" and item["due_at"] == msk(18, 0).isoformat()
    assert item["overdue"] is True and item["late_by"] == "hold"
    assert item["released_at"] == msk(18, 10).isoformat()
    assert view["overdue_from_hold"] == 1

    c = w.client()
    headers = {"Authorization": f"Bearer {BILLING_TOKEN}"}
    async with c.http.post(w.base + "/api/v1/billing/batches", json={"limit": 100}, headers=headers) as resp:
        batch = await resp.json()
    async with c.http.post(
        w.base + f"/api/v1/billing/batches/{batch['batch_id']}/commit", headers=headers
    ) as resp:
        assert resp.status == 200
    w.clock.now = msk(18, 23)  # Telegram is not held to SMS hours
    await job(w).run_once()
    told = f"Показания за ноябрь переданы в расчёт: л/с 1000001, 2 400, квитанция № {unusual.receipt}."
    assert bot.texts(CHAT).count(told) == 1
    await job(w).run_once()
    assert bot.texts(CHAT).count(told) == 1
    assert all("1000005" not in t for t in bot.texts(CHAT))  # another account's commit is not told here


async def test_concurrent_job_passes_send_each_notice_once(
    desk: Web, sendsms: tuple[str, list[dict[str, str]]]
) -> None:
    """Several gateway processes run the job on one database: each reminder and each expiry
    notice still goes once, and a reading is escalated and expired once."""
    w, (_, got) = desk, sendsms
    await history(w)
    w.clock.now = msk(16, 10)
    assert "ответьте ДА" in await sms(w, "2400")
    one = job(w)

    def passes(n: int) -> list[Any]:
        return [
            HeldJob(w.engine, w.gateway.config, w.gateway.calendar, w.clock, one.senders).run_once()
            for _ in range(n)
        ]

    w.clock.now = msk(16, 16)
    results = await asyncio.gather(*passes(8))
    assert sum(r["reminded"] for r in results) == 1 and sum(r["sent"] for r in results) == 1
    w.clock.now = msk(17, 10)
    results = await asyncio.gather(*passes(8))
    assert sum(r["escalated"] for r in results) == 1, results
    w.clock.now = msk(26, 10)
    results = await asyncio.gather(*passes(8))
    assert sum(r["expired"] for r in results) == 1 and sum(r["sent"] for r in results) == 1
    assert [q["to"] for q in got] == ["+79161234567", "+79161234567"]
    async with w.engine.connect() as conn:
        trail = (await conn.execute(select(audit.c.action).order_by(audit.c.id))).scalars().all()
    assert trail == ["escalated", "expired"]


async def test_a_reminder_sendsms_refused_is_sent_on_a_later_pass(
    desk: Web, sendsms: tuple[str, list[dict[str, str]]]
) -> None:
    w, (_, got) = desk, sendsms
    await history(w)
    w.clock.now = msk(16, 10)
    await sms(w, "2400")
    w.clock.now = msk(16, 16)
    REFUSALS.append(503)
    assert (await job(w).run_once())["sent"] == 0
    assert job(w).status.probe()["status"] == "degraded" and len(got) == 1
    w.clock.now = msk(16, 17)
    assert (await job(w).run_once())["sent"] == 1
    assert (await job(w).run_once())["sent"] == 0
    assert [q["to"] for q in got] == ["+79161234567", "+79161234567"]  # refused once, then sent once
    assert job(w).status.probe()["status"] == "ok"
