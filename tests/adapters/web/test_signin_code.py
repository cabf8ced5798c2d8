"""The cabinet's one-time sign-in code, end to end on SQLite and PostgreSQL: delivered by SMS
through real Kannel (tests/adapters/sms/kannel_rig.py) and to a linked Telegram chat (tests/adapters/telegram/fake_bot_api.py);
it expires, works once, is resent at most once a minute, is kept only as a keyed hash; the pages
say the same whether the account exists or not; masked phones show no digit of the factor.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from gateway import account_views
from gateway.privacy import mask_phone, mask_phones_in
from gateway.service import Gateway
from gateway.store.schema_verification import signin_codes
from tests.adapters.sms.kannel_rig import KannelRig, free_port
from tests.adapters.telegram.fake_bot_api import FakeBotApi
from tests.adapters.telegram.test_conversations import Chat, telegram_config
from tests.adapters.telegram.test_conversations import fake as fake  # noqa: F401 - the fixture
from tests.adapters.web.test_cabinet import Client, Web, start_web
from tests.adapters.web.test_signin_limits import CODE, codes_in, settle
from tests.conftest import FakeClock

SENT = "Если номер лицевого счёта указан верно, мы отправили код из 6 цифр"
FAILED = "Код не подходит"


async def ask_code(c: Client, account: str) -> None:
    await c.get("/cabinet/login")
    page = await c.post("/cabinet/login", {"account": account})
    assert page.status == 200 and page.url.endswith("/cabinet/login/code") and SENT in page.text, page.text


async def enter(c: Client, code: str) -> int:
    page = await c.post("/cabinet/login/code", {"code": code})
    return 200 if page.url.endswith("/cabinet/") and page.status == 200 else page.status


async def stored_codes(web: Web) -> list[tuple[str, str, bool]]:
    async with web.engine.connect() as conn:
        rows = await conn.execute(
            select(signin_codes.c.account, signin_codes.c.code_hash, signin_codes.c.used_at).order_by(
                signin_codes.c.id
            )
        )
        return [(r.account, r.code_hash, r.used_at is not None) for r in rows]


async def test_the_code_goes_by_sms_through_kannel(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    rig = KannelRig(tmp_path / "kannel", free_port(), "unused-key")
    web = await start_web(db_url, tmp_path, clock, sms={"sendsms_url": rig.sendsms_url})
    try:
        await asyncio.to_thread(rig.start)
        c = web.client()
        await ask_code(c, "1000003")  # two phones registered: both get the code
        got = [(await asyncio.to_thread(rig.wait_for, p))[0] for p in ("+79161234569", "+79031112233")]
        codes = {m.group(1) for g in got if (m := CODE.search(g.text))}
        assert len(codes) == 1, [g.text for g in got]
        (code,) = codes
        assert "Никому его не сообщайте" in got[0].text
        await settle(web)
        (row,) = await stored_codes(web)
        assert code not in row[1] and len(row[1]) == 64  # only the keyed hash is kept
        assert await enter(c, code) == 200
        assert "Лицевой счёт <b>1000003</b>" in (await c.get("/cabinet/")).text
    finally:
        await asyncio.to_thread(rig.stop)
        await web.close()


async def test_the_code_goes_to_the_linked_telegram_chat(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeBotApi
) -> None:
    gateway = Gateway(telegram_config(db_url, tmp_path, fake), clock=clock)
    await gateway.start()
    web = Web(gateway, f"http://127.0.0.1:{gateway.port}", clock)
    try:
        async with aiohttp.ClientSession() as http:
            await Chat(gateway, http, fake, clock).link(601, "1000002")
        before = len(fake.calls)
        c = web.client()
        await ask_code(c, "1000002")
        await settle(web)
        sent = [x.params["text"] for x in fake.calls[before:] if x.method == "sendMessage"]
        assert len(sent) == 1 and int(fake.calls[-1].params["chat_id"]) == 601
        code = CODE.search(sent[0])
        assert code is not None
        assert await enter(c, "000000" if code.group(1) != "000000" else "111111") == 401
        assert await enter(c, code.group(1)) == 200
        # An account with no linked chat and no SMS route: the same page, and nothing is sent.
        other = web.client()
        await ask_code(other, "1000001")
        await settle(web)
        assert len(fake.calls) == before + 1
    finally:
        await web.close()


async def test_a_code_expires_works_once_and_is_resent_at_most_once_a_minute(
    db_url: str, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    web = await start_web(db_url, tmp_path, clock, verification={"code_to_log": True})
    cab = web.gateway.config.verification
    try:
        c = web.client()
        await ask_code(c, "1000001")
        await settle(web)
        (first,) = codes_in(caplog, "1000001")
        page = await c.post("/cabinet/login/resend", {})
        assert "прежний больше не действует" in page.text
        await settle(web)
        assert codes_in(caplog, "1000001") == [first]  # within the minute: no second code
        # Expired after code_minutes.
        clock.advance(minutes=cab.code_minutes, seconds=1)
        assert await enter(c, first) == 401 and FAILED in (c.last.text if c.last else "")
        # A new one (the minute has passed), which voids the old.
        await c.post("/cabinet/login/resend", {})
        await settle(web)
        second = codes_in(caplog, "1000001")[-1]
        assert len(codes_in(caplog, "1000001")) == 2 and len(await stored_codes(web)) == 2
        assert await enter(c, second) == 200
        # Used once: signing out and in again with it fails.
        await c.post("/cabinet/logout", {})
        again = web.client()
        await ask_code(again, "1000001")  # within the resend minute: nothing new is sent
        await settle(web)
        assert await enter(again, second) == 401
        assert [used for _, _, used in await stored_codes(web)] == [True, True]
    finally:
        await web.close()


async def test_a_code_is_void_after_its_wrong_entries(
    db_url: str, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    web = await start_web(db_url, tmp_path, clock, verification={"code_to_log": True, "code_attempts": 3})
    try:
        c = web.client()
        await ask_code(c, "1000001")
        await settle(web)
        (code,) = codes_in(caplog, "1000001")
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        # From three addresses, so that only the code's own limit stops it.
        for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            other = web.client(address)
            await ask_code(other, "1000001")
            assert await enter(other, wrong) == 401
        assert await enter(c, code) == 401  # three wrong entries: the code is void
    finally:
        await web.close()


async def test_pages_say_the_same_for_unknown_accounts_and_nothing_when_no_channel(
    db_url: str, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    web = await start_web(db_url, tmp_path, clock, verification={"code_to_log": True})
    try:
        pages = []
        for account in ("1000001", "9999999", "1000004", "abc"):
            c = web.client()
            await ask_code(c, account)
            assert c.last is not None
            pages.append(re.sub(r'value="[^"]+"', "", c.last.text))
        await settle(web)
        assert len(set(pages)) == 1
        assert sorted(a for a, _, _ in await stored_codes(web)) == ["1000001", "1000004"]
        assert codes_in(caplog, "9999999") == []
    finally:
        await web.close()
    # Neither SMS nor Telegram nor the log: the same neutral words for every account, no code page.
    web = await start_web(db_url, tmp_path, clock, verification={})
    try:
        for account in ("1000001", "9999999"):
            c = web.client()
            await c.get("/cabinet/login")
            page = await c.post("/cabinet/login", {"account": account})
            assert page.url.endswith("/cabinet/login") and "не можем отправить код входа" in page.text
            assert "Последние 4 цифры" not in page.text  # the digits are off by default
    finally:
        await web.close()


async def test_masked_phones_show_no_digit_of_the_factor(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    for phone, shown in (
        ("+79161234567", "79"),
        ("8 (916) 123-45-67", "79"),
        ("+380441234567", "3"),
        ("12345", ""),
    ):
        assert re.sub(r"\D", "", mask_phone(phone)) == shown  # the country and first digit at most
    assert mask_phone("+79161234567") == "+7 9** ***-**-**"
    assert mask_phones_in("reply to +7 916 123-45-67 sent") == "reply to +7 9** ***-**-** sent"
    web = await start_web(db_url, tmp_path, clock)
    try:
        view = (await account_views.find_accounts(web.engine, "1000003"))[0]
        assert account_views.masked_phones(view) == "+7 9** ***-**-**, +7 9** ***-**-**"
    finally:
        await web.close()
