"""Telegram account linking by the one-time code, end to end on SQLite and PostgreSQL: updates to
the real webhook (tests/adapters/telegram/fake_bot_api.py), the code by SMS through real Kannel (tests/adapters/sms/kannel_rig.py)
or a sendsms receiver, never to a chat; the chat is told the same whatever the account; concurrent
guesses from many chats get at most the code's attempts compared; a cabinet code links no chat.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import aiohttp
import pytest
from sqlalchemy import func, select

from adapters.telegram.storage import TelegramStore
from adapters.telegram.tables import telegram_links
from adapters.telegram.texts import CODE_BUTTON
from gateway.service import Gateway
from gateway.store.schema_verification import signin_codes
from gateway.verification import VERIFIER
from tests.adapters.sms.kannel_rig import KannelRig, free_port
from tests.adapters.telegram.fake_bot_api import FakeBotApi, message_update
from tests.adapters.telegram.test_conversations import CHAT, OTHER, SECRET, Chat, telegram_config
from tests.adapters.telegram.test_conversations import fake as fake
from tests.adapters.web.test_signin_limits import CODE as CABINET_CODE
from tests.adapters.web.test_signin_limits import codes_in
from tests.conftest import FakeClock
from tests.gateway.test_held_lifecycle import sendsms

__all__ = ["fake", "sendsms"]  # the fixtures, used by name

LINK_CODE = re.compile(r"Код для привязки Telegram к лицевому счёту: (\d{6})")
LINKED = "✅ Л/с {} привязан к этому чату."
SENT = "Если номер л/с указан верно и для него указан телефон, мы отправили на этот телефон SMS"
FAILED = "Код не подходит"


async def settle(gateway: Gateway) -> None:
    """Wait for the code sends started in the background."""
    assert gateway._runner is not None
    verifier = gateway._runner.app[VERIFIER]
    while verifier.tasks:
        await asyncio.gather(*list(verifier.tasks))


async def started(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeBotApi, **sections: dict[str, object]
) -> Gateway:
    gateway = Gateway(telegram_config(db_url, tmp_path, fake, sections), clock=clock)
    await gateway.start()
    return gateway


@pytest.fixture
async def chat(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeBotApi, sendsms: tuple[str, list[dict[str, str]]]
) -> AsyncIterator[Chat]:
    gateway = await started(
        db_url, tmp_path, clock, fake, sms={"sendsms_url": sendsms[0], "reminders": False}
    )
    async with aiohttp.ClientSession() as http:
        yield Chat(gateway, http, fake, clock)
    await gateway.stop()


def sms_codes(got: list[dict[str, str]], phone: str) -> list[str]:
    texts = [unquote_plus(g.get("text", "")) for g in got if g.get("to") == phone]
    return [m.group(1) for t in texts if (m := LINK_CODE.search(t))]


async def ask_code(chat: Chat, chat_id: int, account: str) -> list[str]:
    """/start, the account, «Получить код по SMS»: the texts the chat was sent."""
    await chat.say(chat_id, "/start")
    ask = await chat.say(chat_id, account)
    pressed = await chat.say(chat_id, CODE_BUTTON)
    await settle(chat.gateway)
    return ask + pressed


async def count(gateway: Gateway, table: Any, *where: Any) -> int:
    async with gateway.engine.connect() as conn:
        query = select(func.count()).select_from(table).where(*where)
        return int((await conn.execute(query)).scalar_one())


def no_code_in_any_chat(fake: FakeBotApi, *codes: str) -> bool:
    return not any(code in t for t in fake.texts() for code in codes)


async def test_a_code_by_sms_through_kannel_links_the_chat(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeBotApi
) -> None:
    rig = KannelRig(tmp_path / "kannel", free_port(), "unused-key")
    gateway = await started(
        db_url, tmp_path, clock, fake, sms={"sendsms_url": rig.sendsms_url, "reminders": False}
    )
    try:
        await asyncio.to_thread(rig.start)
        async with aiohttp.ClientSession() as http:
            chat = Chat(gateway, http, fake, clock)
            await chat.link(OTHER, "1000003")  # a chat linked already gets no linking code
            texts = await ask_code(chat, CHAT, "1000003")
            assert "«Получить код по SMS»" in texts[0] and texts[1].startswith(SENT)
            keyboard = fake.sent(CHAT)[-2]["reply_markup"]["keyboard"][0]
            assert [b["text"] for b in keyboard] == ["📱 Поделиться номером", CODE_BUTTON]
            got = [(await asyncio.to_thread(rig.wait_for, p))[0] for p in ("+79161234569", "+79031112233")]
            codes = {m.group(1) for g in got if (m := LINK_CODE.search(g.text))}
            assert len(codes) == 1 and "Никому его не сообщайте" in got[0].text, [g.text for g in got]
            (code,) = codes
            assert no_code_in_any_chat(fake, code)  # not to the chat asking, nor to the one linked
            wrong = f"{(int(code) + 1) % 10**6:06d}"
            assert (await chat.say(CHAT, wrong))[0].startswith(FAILED)
            assert (await chat.say(CHAT, f"{code[:3]} {code[3:]}"))[0] == LINKED.format("1000003")
            assert [link.method for link in await TelegramStore(gateway.engine, clock).links(CHAT)] == [
                "code"
            ]
            # Used once: another chat cannot link with it.
            await chat.say(700, "/start")
            await chat.say(700, "1000003")
            assert (await chat.say(700, code))[0].startswith(FAILED)
    finally:
        await asyncio.to_thread(rig.stop)
        await gateway.stop()


async def test_the_chat_is_told_the_same_whatever_the_account(
    chat: Chat, sendsms: tuple[str, list[dict[str, str]]]
) -> None:
    _, got = sendsms
    answers = []
    for chat_id, account in ((801, "1000001"), (802, "9999999"), (803, "1000004"), (804, "10000")):
        texts = await ask_code(chat, chat_id, account)
        answers.append([t.replace(account, "N") for t in texts])
    assert all(a == answers[0] for a in answers), answers
    assert not any("+7" in t or "*" in t for t in answers[0])  # where the code went: not even a mask
    # Only the existing account with a phone got an SMS, and only one (the minute's resend limit).
    assert [g["to"] for g in got] == ["+79161234567"]
    assert len(sms_codes(got, "+79161234567")) == 1
    await chat.say(801, CODE_BUTTON)
    await settle(chat.gateway)
    assert len(got) == 1  # within code_resend_seconds: the first code still holds
    chat.clock.advance(seconds=61)
    await chat.say(801, CODE_BUTTON)
    await settle(chat.gateway)
    first, second = sms_codes(got, "+79161234567")
    assert (await chat.say(801, first))[0].startswith(FAILED)  # voided by the new one
    assert (await chat.say(801, second))[0] == LINKED.format("1000001")
    assert no_code_in_any_chat(chat.fake, first, second)


async def test_concurrent_code_guesses_from_many_chats_get_at_most_the_codes_attempts(
    chat: Chat, sendsms: tuple[str, list[dict[str, str]]]
) -> None:
    _, got = sendsms
    await ask_code(chat, CHAT, "1000001")  # the holder asks; the code goes to their phone
    (code,) = sms_codes(got, "+79161234567")
    chats = [900 + i for i in range(40)]
    for c in chats:  # strangers, each waiting for a second factor for the same account
        await chat.say(c, "/start")
        await chat.say(c, "1000001")
    guesses = [f"{(int(code) + 1 + i) % 10**6:06d}" for i in range(39)] + [code]
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}

    async def deliver(update: dict[str, Any]) -> None:
        async with chat.http.post(chat.url, json=update, headers=headers) as resp:
            assert resp.status == 200, await resp.text()

    await asyncio.gather(
        *(
            deliver(message_update(5000 + i, c, g))
            for i, (c, g) in enumerate(zip(chats, guesses, strict=True))
        )
    )
    attempts = chat.gateway.config.verification.code_attempts
    async with chat.gateway.engine.connect() as conn:
        row = (await conn.execute(select(signin_codes.c.attempts, signin_codes.c.used_at))).one()
    assert row.attempts <= attempts  # at most the code's attempts were compared, from all chats
    strangers = await count(chat.gateway, telegram_links, telegram_links.c.chat_id.in_(chats))
    assert strangers == (1 if row.used_at is not None else 0)
    # The holder, whose code a stranger may have spent or voided, gets a new one and links.
    chat.clock.advance(seconds=61)
    await chat.say(CHAT, CODE_BUTTON)
    await settle(chat.gateway)
    assert (await chat.say(CHAT, sms_codes(got, "+79161234567")[-1]))[0] == LINKED.format("1000001")


async def test_a_cabinet_code_links_no_chat_and_a_linking_code_opens_no_cabinet(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeBotApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    from tests.adapters.web.test_cabinet import Web
    from tests.adapters.web.test_signin_code import ask_code as ask_cabinet_code
    from tests.adapters.web.test_signin_code import enter

    gateway = await started(db_url, tmp_path, clock, fake, verification={"code_to_log": True})
    web = Web(gateway, f"http://127.0.0.1:{gateway.port}", clock)
    try:
        async with aiohttp.ClientSession() as http:
            chat = Chat(gateway, http, fake, clock)
            c = web.client()
            await ask_cabinet_code(c, "1000001")
            await settle(gateway)
            (cabinet_code,) = codes_in(caplog, "1000001")
            await ask_code(chat, CHAT, "1000001")  # a code of its own: the cabinet's still holds
            linking = [m.group(1) for r in caplog.records if (m := LINK_CODE.search(r.getMessage()))]
            assert len(linking) == 1 and CABINET_CODE.search(caplog.text)
            assert (await chat.say(CHAT, cabinet_code))[0].startswith(FAILED)
            assert await enter(c, linking[0]) == 401
            assert await enter(c, cabinet_code) == 200
            assert (await chat.say(CHAT, linking[0]))[0] == LINKED.format("1000001")
    finally:
        await web.close()
