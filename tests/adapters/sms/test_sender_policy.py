"""Only the holder speaks for an account: SMS over the real Kannel route from phones that are and
are not registered for the account, under each `[senders] unverified` policy, and the per-phone
hourly limit under concurrent requests; on SQLite and PostgreSQL.

Account 1000001 (meter M-1, 6 digits, ул. Ленина 1-1) has the phone +79161234567 registered;
+79990000000 is registered nowhere. The holder's reading of 12 345 on 17.11 is the history a
stranger must not learn anything of.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from gateway.service import Gateway
from gateway.store.schema import inbound, readings
from tests.adapters.sms.test_routes import KEY, count, kannel
from tests.conftest import FakeClock, Running, make_config

HOLDER = "+79161234567"  # registered for 1000001
STRANGER = "+79990000000"  # registered for nothing
OTHER_HOLDER = "+79161234568"  # registered for 1000002, not for 1000001
# Anything of account 1000001 a reply could give away: its earlier value and date, its address,
# its meter's serial and digit count, its zones.
SECRETS = re.compile(r"12 ?345|17\.11|Ленина|M-1|6 цифр|Т1|Т2")


async def _gateway(db_url: str, tmp_path: Path, clock: FakeClock, **senders: object) -> Gateway:
    config = make_config(db_url, tmp_path, sms={"kannel_key": KEY, "replies_per_hour": 1000}, senders=senders)
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    return gateway


@pytest.fixture(params=["refuse", "hold", "accept"])
async def sms(
    request: pytest.FixtureRequest, db_url: str, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Running]:
    gateway = await _gateway(db_url, tmp_path, clock, unverified=request.param)
    async with aiohttp.ClientSession() as http:
        r = Running(gateway, f"http://127.0.0.1:{gateway.port}", http, clock)
        _, body, _ = await kannel(r, "1000001 12345", phone=HOLDER)
        assert body == "Принято: 12345 (л/с 1000001). №1"
        clock.advance(days=1)
        yield r
    await gateway.stop()


def policy(r: Running) -> str:
    return r.gateway.config.senders.unverified


async def stored(r: Running) -> list[tuple[str, str, str]]:
    async with r.gateway.engine.connect() as conn:
        rows = await conn.execute(select(readings.c.value, readings.c.verdict, readings.c.reasons))
        return [(v, verdict, reasons) for v, verdict, reasons in rows.all()]


async def test_a_stranger_lower_than_the_previous_learns_nothing(sms: Running) -> None:
    _, body, _ = await kannel(sms, "1000001 100", phone=STRANGER)
    assert not SECRETS.search(body), body
    if policy(sms) == "refuse":
        assert body == (
            "Не принято. Номер не зарегистрирован для этого л/с. "
            "Зарегистрируйте его в личном кабинете или по телефону 8-800-000-00-00"
        )
        assert len(body) <= 134
        assert await stored(sms) == [("12345", "accepted", "[]")]  # nothing entered for billing
    else:
        assert body == "Не принято. Меньше предыдущего показания. Проверьте"
        values = {v: verdict for v, verdict, _ in await stored(sms)}
        assert values == {"12345": "accepted", "100": "rejected"}
    assert await count(sms.gateway.engine, inbound) == 2
    # The holder is told the whole story, as before.
    _, body, _ = await kannel(sms, "1000001 100", phone=HOLDER)
    assert body == "Не принято. 100 меньше прежних 12 345 от 17.11. Проверьте"


async def test_a_stranger_with_a_plausible_value_follows_the_policy(sms: Running) -> None:
    _, body, _ = await kannel(sms, "1000001 12400", phone=STRANGER)
    assert not SECRETS.search(body), body
    rows = {v: (verdict, reasons) for v, verdict, reasons in await stored(sms)}
    if policy(sms) == "refuse":
        assert body.startswith("Не принято. Номер не зарегистрирован для этого л/с")
        assert "12400" not in rows
    elif policy(sms) == "hold":
        assert body == "Получено, на проверке: 12400 (л/с 1000001). №2"  # one SMS: the reason is cut
        assert rows["12400"][0] == "flagged" and '"unverified_sender"' in rows["12400"][1]
    else:
        assert body == "Принято: 12400 (л/с 1000001). №2"
        assert rows["12400"][0] == "accepted"
    # A registered holder of another account is a stranger to this one.
    _, body, _ = await kannel(sms, "1000001 12300", phone=OTHER_HOLDER)
    assert not SECRETS.search(body), body


async def test_refusal_is_the_same_whether_the_account_exists_or_not(sms: Running) -> None:
    _, known, _ = await kannel(sms, "1000001 12400", phone=STRANGER)
    _, unknown, _ = await kannel(sms, "9999999 12400", phone=STRANGER)
    _, meter, _ = await kannel(sms, "1000002#M-1#12400", phone=STRANGER)  # M-1 is not on 1000002
    assert not SECRETS.search(meter), meter
    if policy(sms) == "refuse":
        assert known == unknown == meter
    else:
        assert meter == "Не принято. Счётчик не найден на этом л/с"


async def test_a_bare_reading_from_an_unknown_phone_names_no_account(sms: Running) -> None:
    _, body, _ = await kannel(sms, "100", phone=STRANGER)
    assert body == "Не принято. Укажите номер л/с: 1234567 12345"


@pytest.fixture
async def limited(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Running]:
    gateway = await _gateway(db_url, tmp_path, clock, submissions_per_hour=5)
    async with aiohttp.ClientSession() as http:
        yield Running(gateway, f"http://127.0.0.1:{gateway.port}", http, clock)
    await gateway.stop()


LIMITED = "Слишком много показаний с этого номера. Повторите через час"


async def test_concurrent_readings_from_one_phone_decide_exactly_the_limit(limited: Running) -> None:
    replies = await asyncio.gather(
        *(kannel(limited, f"1000001 {10000 + i}", phone=HOLDER, mid=f"burst-{i}") for i in range(40))
    )
    bodies = [body for status, body, _ in replies if status == 200]
    assert len(bodies) == 40
    assert sum(body == LIMITED for body in bodies) == 35
    assert len(await stored(limited)) == 5  # only the first five were decided
    # A redelivery of a refused message gets its answer again and is not counted again.
    refused = next(i for i, (_, body, _) in enumerate(replies) if body == LIMITED)
    assert (await kannel(limited, "x", phone=HOLDER, mid=f"burst-{refused}"))[1] == LIMITED
    # Other phones have their own count; the next clock hour starts afresh.
    assert (await kannel(limited, "1000002 200 100", phone=OTHER_HOLDER))[1].startswith("Принято")
    limited.clock.advance(hours=1)
    assert (await kannel(limited, "1000001 20000", phone=HOLDER))[1] != LIMITED
    assert len(await stored(limited)) == 5 + 2 + 1  # 1000002 has two zones
