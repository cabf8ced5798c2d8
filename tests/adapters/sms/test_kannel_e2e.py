"""End to end through real Kannel: fakesmsc (the phones' SMS centre) -> bearerbox -> smsbox ->
the gateway's Kannel route -> the reply SMS fakesmsc receives; reminders through sendsms.

Kannel runs from the shipped deploy/kannel/kannel.conf (ports and paths moved to a temporary
directory). Between smsbox and the gateway sits a small proxy that can lose the gateway's
answer on its way back, as a network would: smsbox then asks again with the same message id.

Skipped only when the Kannel binaries are missing outside CI; in CI (CI=true) that fails.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import ColumnElement, Table, func, insert, select

from adapters.sms.kannel import KannelSendsms
from adapters.sms.tables import sms_messages
from gateway.model import Channel, Status, Submission
from gateway.reminders import ReminderJob
from gateway.service import Gateway
from gateway.store.schema import accounts, inbound, phones, readings
from tests.adapters.sms.kannel_rig import KannelRig, Received, kannel_binaries
from tests.conftest import FakeClock, make_config

if kannel_binaries() is None:
    if os.environ.get("CI") == "true":
        pytest.fail(
            "Kannel is not installed: bearerbox, smsbox and /usr/lib/kannel/test/fakesmsc are needed "
            "(Debian packages kannel and kannel-extras; scripts/system-deps.sh installs them)",
            pytrace=False,
        )
    pytest.skip("Kannel is not installed (apt-get install kannel kannel-extras)", allow_module_level=True)

KEY = "e2e-kannel-key"
PHONE_1 = "+79161234567"  # account 1000001
PHONE_2 = "+79161234568"  # account 1000002, day/night meter


class LossyProxy:
    """Forwards smsbox's calls to the gateway; loses the first answer to chosen senders."""

    def __init__(self) -> None:
        self.target = ""
        self.lose_answer_to: set[str] = set()
        self.calls: list[dict[str, str]] = []
        self._http: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        self.calls.append(dict(request.query))
        async with self._http.request(
            request.method, self.target + request.raw_path, data=await request.read()
        ) as r:
            body, status = await r.read(), r.status
            headers = {k: r.headers[k] for k in ("Content-Type", "X-Kannel-Coding") if k in r.headers}
        sender = request.query.get("from", "")
        if sender in self.lose_answer_to:
            self.lose_answer_to.discard(sender)
            assert request.transport is not None
            request.transport.abort()  # the gateway answered; smsbox never hears it
            return web.Response(status=204)
        return web.Response(body=body, status=status, headers=headers)

    async def start(self) -> int:
        self._http = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()


@dataclass
class World:
    gateway: Gateway
    kannel: KannelRig
    proxy: LossyProxy
    clock: FakeClock


@pytest.fixture
async def world(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[World]:
    proxy = LossyProxy()
    proxy_port = await proxy.start()
    # Readings here come from phones not in the registry: kept under `accept` (refusal: test_sender_policy.py).
    config = make_config(
        db_url, tmp_path, sms={"kannel_key": KEY, "replies_per_hour": 3}, senders={"unverified": "accept"}
    )
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    proxy.target = f"http://127.0.0.1:{gateway.port}"
    # The shipped config, but smsbox asks a silent gateway again after 1 s instead of 5.
    rig = KannelRig(tmp_path / "kannel", proxy_port, KEY, **{"http-queue-delay": "1"})
    try:
        await asyncio.to_thread(rig.start)
        yield World(gateway, rig, proxy, clock)
    finally:
        await asyncio.to_thread(rig.stop)
        await gateway.stop()
        await proxy.stop()


async def send(w: World, phone: str, text: str) -> None:
    await asyncio.to_thread(w.kannel.send, phone, text)
    await asyncio.sleep(0.05)  # one line at a time: fakesmsc reads its input line by line


async def replies(w: World, phone: str, count: int = 1) -> list[Received]:
    return await asyncio.to_thread(w.kannel.wait_for, phone, count)


async def count_rows(w: World, table: Table, *where: ColumnElement[bool]) -> int:
    async with w.gateway.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one())


async def test_sms_round_trip_through_kannel(world: World) -> None:
    w = world
    w.proxy.lose_answer_to.add("+79990000001")
    await send(w, PHONE_2, "день 12345 ночь 4567")
    await send(w, "+79990000000", "12345")  # a phone not in the registry
    await send(w, "+79990000001", "ЛС 1000001 показания 12345")  # its first answer gets lost
    for _ in range(4):  # three replies an hour at most for one sender
        await send(w, PHONE_1, "помощь")

    (got,) = await replies(w, PHONE_2)
    assert got.text == "Принято: Т1 12345, Т2 4567 (л/с 1000002). №1"
    assert got.coding == "ucs-2" and got.sender == "7377"
    (unknown,) = await replies(w, "+79990000000")
    assert unknown.text == "Не принято. Укажите номер л/с: 1234567 12345" and unknown.coding == "ucs-2"
    (retried,) = await replies(w, "+79990000001")
    assert retried.text.startswith("Принято: 12345 (л/с 1000001). №")
    helps = await replies(w, PHONE_1, 3)
    assert {m.text for m in helps} == {"Пример: 1234567 12345 (ЛС показание); зоны: 1234567 Т1 123 Т2 45"}

    await asyncio.sleep(2.5)  # anything more would have come by now
    assert len(w.kannel.messages_to(PHONE_1)) == 3  # the fourth was withheld: empty answer, no SMS
    assert len(w.kannel.messages_to("+79990000001")) == 1  # Kannel asked twice, the resident got one SMS
    lost = [c for c in w.proxy.calls if c.get("from") == "+79990000001"]
    assert len(lost) == 2 and lost[0]["id"] == lost[1]["id"]  # the same message, asked for again
    assert lost[0]["text"] == "ЛС 1000001 показания 12345"  # Cyrillic arrived intact (UCS-2 -> UTF-8)
    assert await count_rows(w, inbound) == 3  # PHONE_2, the unknown sender, the retried one: once
    assert await count_rows(w, readings) == 3  # T1 + T2 of 1000002, and 1000001
    assert await count_rows(w, sms_messages, sms_messages.c.withheld.is_(True)) == 1


async def test_confirmation_in_two_parts_and_reminders_through_kannel(world: World) -> None:
    w = world
    intake = w.gateway.intake
    for value in ("1000", "1300", "1600"):  # two months of history for 1000006, ~10 kWh a day
        v = await intake.submit(
            Submission(Channel.CABINET, w.clock(), "x", account="1000006", values={"T": value})
        )
        assert v.status is Status.ACCEPTED
        w.clock.advance(days=30)
    w.clock.now = w.clock.now.replace(day=17, hour=9)  # back inside a window (15th-25th), 12:00 Moscow
    # The holder's phone: only a phone registered for the account is told its figures.
    async with w.gateway.engine.begin() as conn:
        account_id = (
            await conn.execute(select(accounts.c.id).where(accounts.c.number == "1000006"))
        ).scalar_one()
        await conn.execute(insert(phones).values(account_id=account_id, phone="+79990000003"))
    await send(w, "+79990000003", "1000006 2400")
    (ask,) = await replies(w, "+79990000003")
    assert ask.parts == 2 and ask.coding == "udh"  # a concatenated UCS-2 SMS
    assert ask.text.startswith("2400 (л/с 1000006): расход 800 кВт·ч") and ask.text.endswith("ответьте ДА")
    await send(w, "+79990000003", "Да")
    _, confirmed = await replies(w, "+79990000003", 2)
    assert confirmed.text.startswith("Принято: 2400 (л/с 1000006). №")

    # Reminders through Kannel's sendsms: accounts without a reading of this period.
    sendsms = KannelSendsms(w.gateway.config.sms.model_copy(update={"sendsms_url": w.kannel.sendsms_url}))
    job = ReminderJob(w.gateway.engine, w.gateway.config, w.gateway.calendar, w.clock, [sendsms])
    try:
        sent = await job.run_once()
    finally:
        await sendsms.close()
    assert sent == 4  # 1000001, 1000002, 1000003 (two phones), 1000005 (with 1000003's second phone)
    (reminder,) = await replies(w, "+79031112233")
    assert reminder.text == "Показания по л/с 1000003, 1000005: до 25.02. Пример: 1000003 12345"
    assert reminder.coding == "ucs-2" and reminder.sender == "7377"
    started = time.monotonic()
    assert await job.run_once() == 0  # never twice
    assert time.monotonic() - started < 5
