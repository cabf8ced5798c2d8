"""The SMS routes over HTTP on a real gateway: Kannel's sms-service call and Twilio-style webhooks.

What a resident's phone would show is the body of the answer (Kannel) or the TwiML message.
Kannel itself is in the loop in tests/adapters/sms/test_kannel_e2e.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.sms.tables import sms_messages, sms_optouts
from adapters.sms.twilio import signature_valid, twilio_signature, twiml
from gateway.privacy import phone_hash
from gateway.service import Gateway
from gateway.store.schema import inbound, readings
from tests.conftest import FakeClock, Running, make_config

KEY = "test-kannel-key"
TWILIO_TOKEN = "test-twilio-auth-token"
PHONE_1 = "+79161234567"  # account 1000001, meter M-1 (single rate)
PHONE_2 = "+79161234568"  # account 1000002, meter M-2 (day/night)


@pytest.fixture
async def sms(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Running]:
    config = make_config(
        db_url,
        tmp_path,
        sms={"kannel_key": KEY, "twilio_auth_token": TWILIO_TOKEN, "replies_per_hour": 5},
        senders={"unverified": "accept"},  # strangers' readings are kept here; refusal: test_sender_policy.py
    )
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    async with aiohttp.ClientSession() as http:
        yield Running(gateway, f"http://127.0.0.1:{gateway.port}", http, clock)
    await gateway.stop()


_ids = iter(range(1, 10**6))


async def kannel(
    r: Running, text: str, phone: str = PHONE_2, mid: str | None = None, key: str = KEY, **extra: str
) -> tuple[int, str, dict[str, str]]:
    """What smsbox's get-url call gets back: status, body (the reply SMS), headers."""
    params = {
        "from": phone,
        "to": "7377",
        "text": text,
        "id": mid or f"uuid-{next(_ids)}",
        "ts": "x",
        "key": key,
    }
    params.update(extra)
    async with r.http.get(r.base + "/channels/sms/kannel", params=params) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


async def count(engine: AsyncEngine, table: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one())


async def test_cyrillic_reading_is_stored_and_answered_in_ucs2(sms: Running) -> None:
    status, body, headers = await kannel(sms, "день 12345 ночь 4567")
    assert status == 200, body
    assert body == "Принято: Т1 12345, Т2 4567 (л/с 1000002). №1"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Kannel-Coding"] == "2"  # smsbox sends it as UCS-2
    async with sms.gateway.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(readings.c.zone, readings.c.value, readings.c.channel, readings.c.source)
            )
        ).all()
        payload = (await conn.execute(select(inbound.c.payload))).scalar_one()
    assert sorted(rows) == [
        ("T1", "12345", "sms", "+7 9** ***-**-**"),
        ("T2", "4567", "sms", "+7 9** ***-**-**"),
    ]
    assert "день 12345 ночь 4567" in payload and KEY not in payload  # raw stored, the secret not


async def test_post_form_and_ucs2_bytes_arrive_intact(sms: Running) -> None:
    form = {"from": "89161234567", "to": "7377", "text": "Показания 12345", "id": "p-1", "key": KEY}
    async with sms.http.post(sms.base + "/channels/sms/kannel", data=form) as resp:
        assert resp.status == 200
        assert await resp.text() == "Принято: 12345 (л/с 1000001). №1"  # 8-916... is the same phone
    # A UCS-2 message that smsbox did not recode: raw UTF-16BE bytes and charset=UTF-16BE.
    raw = quote("ночь 4567 день 12345".encode("utf-16-be"), safe="")
    url = f"{sms.base}/channels/sms/kannel?from=%2B79161234568&text={raw}&id=u-1&coding=2&charset=UTF-16BE&key={KEY}"
    async with sms.http.get(url) as resp:
        assert await resp.text() == "Принято: Т1 12345, Т2 4567 (л/с 1000002). №2"


async def test_redelivery_gets_the_same_reply_and_no_second_reading(sms: Running) -> None:
    first = await kannel(sms, "1000001 12345", phone="+79990000001", mid="dup-1")
    again = await kannel(sms, "1000001 12345", phone="+79990000001", mid="dup-1")
    assert first[1] == again[1] == "Принято: 12345 (л/с 1000001). №1"
    engine = sms.gateway.engine
    assert await count(engine, readings) == 1 and await count(engine, inbound) == 1
    # Concurrent deliveries of one message: one reading, one answer for all.
    replies = await asyncio.gather(*(kannel(sms, "1000002 200 100", mid="dup-2") for _ in range(6)))
    assert {body for _, body, _ in replies} == {"Принято: Т1 200, Т2 100 (л/с 1000002). №2"}
    assert await count(engine, readings) == 3 and await count(engine, sms_messages) == 2


async def test_unknown_sender_is_told_what_to_send(sms: Running) -> None:
    _, body, _ = await kannel(sms, "12345", phone="+79990000000")
    assert body == "Не принято. Укажите номер л/с: 1234567 12345"
    _, body, _ = await kannel(sms, "привет", phone="+79990000000")
    assert body.startswith("Не принято.") and len(body) <= 70


async def test_help_and_stop_commands(sms: Running) -> None:
    _, body, _ = await kannel(sms, "Помощь")
    assert body == "Пример: 1234567 12345 (ЛС показание); зоны: 1234567 Т1 123 Т2 45"
    _, body, _ = await kannel(sms, "СТОП", phone="8 916 123-45-68")
    assert body == "Напоминания отключены. Показания принимаем. Вернуть: СТАРТ"
    async with sms.gateway.engine.connect() as conn:
        assert (await conn.execute(select(sms_optouts.c.phone))).scalars().all() == [phone_hash(PHONE_2)]
    _, body, _ = await kannel(sms, "старт", phone="+79161234568")
    assert body == "Напоминания включены. Отключить: СТОП"
    async with sms.gateway.engine.connect() as conn:
        assert (await conn.execute(select(sms_optouts.c.phone))).scalars().all() == []
    assert await count(sms.gateway.engine, readings) == 0
    _, body, _ = await kannel(sms, "да")
    assert body == "Нет показаний, ждущих подтверждения. Пример: 1234567 12345"


async def test_yes_confirms_the_senders_unusual_reading(sms: Running) -> None:
    for value in ("1000", "1300", "1600"):  # two months of ~10 kWh a day
        _, body, _ = await kannel(sms, value, phone=PHONE_1)
        assert body.startswith("Принято"), body
        sms.clock.advance(days=30)
    _, body, _ = await kannel(sms, "2400", phone=PHONE_1)
    assert body.endswith("Если верно, ответьте ДА") and "расход 800 кВт·ч" in body
    # Another resident's "да" does not touch it.
    _, other, _ = await kannel(sms, "да", phone=PHONE_2)
    assert other.startswith("Нет показаний")
    sms.clock.advance(minutes=5)
    _, body, _ = await kannel(sms, "Да!", phone=PHONE_1)
    assert body == "Принято: 2400 (л/с 1000001). №4"
    async with sms.gateway.engine.connect() as conn:
        verdicts = (await conn.execute(select(readings.c.verdict).order_by(readings.c.id))).scalars().all()
    assert verdicts == ["accepted"] * 4
    _, body, _ = await kannel(sms, "да", phone=PHONE_1)
    assert body.startswith("Нет показаний")


async def test_a_redelivered_yes_confirms_nothing_more(sms: Running) -> None:
    for value in ("1000", "1300", "1600"):
        await kannel(sms, value, phone=PHONE_1)
        sms.clock.advance(days=30)
    for value in ("2400", "2500"):  # two unusual values in a row, both waiting for "да"
        _, body, _ = await kannel(sms, value, phone=PHONE_1)
        assert body.endswith("ответьте ДА"), body
    first = await kannel(sms, "да", phone=PHONE_1, mid="yes-1")
    assert first[1] == "Принято: 2500 (л/с 1000001). №5"  # the latest one
    assert (await kannel(sms, "да", phone=PHONE_1, mid="yes-1"))[1] == first[1]  # Kannel asks again
    async with sms.gateway.engine.connect() as conn:
        verdicts = dict((await conn.execute(select(readings.c.value, readings.c.verdict))).all())
    assert verdicts["2400"] == "needs_confirmation" and verdicts["2500"] == "accepted"


async def test_replies_are_limited_per_sender_but_readings_are_kept(sms: Running) -> None:
    bodies = [
        (await kannel(sms, f"1000001 {1000 + i}", phone="+79990000002", mid=f"rl-{i}"))[1] for i in range(7)
    ]
    assert all(b.startswith("Принято") for b in bodies[:5])
    assert bodies[5:] == ["", ""]  # over 5 per hour: stored and decided, but not answered
    engine = sms.gateway.engine
    assert await count(engine, readings) == 7
    assert (await kannel(sms, "1000001 1005", phone="+79990000002", mid="rl-5"))[1] == ""  # a retry too
    assert (await kannel(sms, "помощь", phone=PHONE_1))[1].startswith("Пример")  # other senders unaffected
    sms.clock.advance(minutes=61)
    assert (await kannel(sms, "1000001 1010", phone="+79990000002"))[1].startswith("Принято")


async def test_bad_kannel_requests_are_refused_with_json(sms: Running) -> None:
    status, body, headers = await kannel(sms, "12345", key="wrong")
    assert status == 403 and '"forbidden"' in body and headers["Content-Type"].startswith("application/json")
    async with sms.http.get(sms.base + f"/channels/sms/kannel?text=1&key={KEY}") as resp:
        assert resp.status == 400 and "from" in (await resp.json())["error"]["message"]
    async with sms.http.post(sms.base + "/channels/sms/unknown-aggregator", data={"a": "b"}) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    assert await count(sms.gateway.engine, inbound) == 0


async def twilio(r: Running, form: dict[str, str], signature: str | None = None) -> tuple[int, str]:
    url = r.base + "/channels/sms/twilio"
    sig = signature if signature is not None else twilio_signature(TWILIO_TOKEN, url, form.items())
    async with r.http.post(url, data=form, headers={"X-Twilio-Signature": sig}) as resp:
        return resp.status, await resp.text()


async def test_twilio_webhook_signed_and_deduplicated(sms: Running) -> None:
    form = {
        "MessageSid": "SM0001",
        "AccountSid": "AC1",
        "From": PHONE_2,
        "To": "+15005550006",
        "Body": "Т1 12345 Т2 4567",
    }
    status, body = await twilio(sms, form)
    assert status == 200
    assert body == twiml("Принято: Т1 12345, Т2 4567 (л/с 1000002). №1")
    assert "<Message>Принято: Т1 12345, Т2 4567 (л/с 1000002). №1</Message>" in body
    assert await twilio(sms, form) == (200, body)  # the aggregator's retry
    assert await count(sms.gateway.engine, readings) == 2  # T1 and T2, once
    status, body = await twilio(sms, {**form, "MessageSid": "SM0002"}, signature="bm90IGEgc2lnbmF0dXJl")
    assert status == 403 and "X-Twilio-Signature" in body
    tampered = {**form, "MessageSid": "SM0003"}
    sig = twilio_signature(TWILIO_TOKEN, sms.base + "/channels/sms/twilio", tampered.items())
    status, _ = await twilio(sms, {**tampered, "Body": "Т1 99999 Т2 4567"}, signature=sig)
    assert status == 403
    assert await count(sms.gateway.engine, inbound) == 1


def test_twilio_signature_matches_the_documented_example() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params.items()) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert signature_valid(
        "12345",
        "https://mycompany.com:443/myapp.php?foo=1&bar=2",
        list(params.items()),
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
    )
    assert not signature_valid("12345", url, list(params.items()), "")
    assert twiml("") == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    assert "<Message>a &lt;b&gt; &amp;</Message>" in twiml("a <b> &")


async def test_routes_are_off_without_their_secrets(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    gateway = Gateway(make_config(db_url, tmp_path), clock=clock)
    await gateway.start()
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{gateway.port}"
            async with http.get(base + "/channels/sms/kannel?from=1&text=1&key=") as resp:
                assert resp.status == 404
            async with http.post(base + "/channels/sms/twilio", data={"From": "1"}) as resp:
                assert resp.status == 404
            async with http.get(base + "/healthz") as resp:
                checks = (await resp.json())["checks"]
        assert checks["sms_kannel"]["status"] == "disabled" and checks["reminders"] == {"status": "disabled"}
    finally:
        await gateway.stop()
