"""Telegram intake of updates it cannot read, and whose accounts a chat may speak for: a real gateway,
updates posted to its webhook (or queued for getUpdates), replies recorded by tests/adapters/telegram/fake_bot_api.py;
on SQLite and PostgreSQL.

An update of a type aiogram does not know (a newer Bot API) is acknowledged with 200 and not
stored; answering anything else would make Telegram redeliver it, holding back later updates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters.telegram.storage import TelegramStore
from adapters.telegram.tables import telegram_updates
from gateway.service import Gateway
from gateway.store.schema import inbound, readings
from tests.adapters.telegram.fake_bot_api import FakeBotApi, message_update
from tests.adapters.telegram.test_conversations import CHAT, Chat, telegram_config
from tests.conftest import FakeClock

FUTURE = {"update_id": 7001, "some_future_field": {"id": 1, "chat": {"id": CHAT, "type": "private"}}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotApi]:
    api = FakeBotApi()
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def chat(db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeBotApi) -> AsyncIterator[Chat]:
    gateway = Gateway(telegram_config(db_url, tmp_path, fake), clock=clock)
    await gateway.start()
    # Linked directly: the linking conversation is tested in tests/adapters/telegram/test_conversations.py.
    await TelegramStore(gateway.engine, clock).link(CHAT, CHAT, "1000001", "test")
    async with aiohttp.ClientSession() as http:
        yield Chat(gateway, http, fake, clock)
    await gateway.stop()


async def test_an_update_of_an_unknown_type_is_acknowledged_and_ignored(chat: Chat) -> None:
    for _ in range(2):  # Telegram's retry, had it been refused, gets the same
        status, body = await chat.post(FUTURE)
        assert (status, body) == (200, {"ok": True, "outcome": "ignored"})
    # A known type whose shape aiogram cannot read (with the secret: it is from Telegram).
    status, body = await chat.post({"update_id": 7002, "message": {"message_id": 1, "text": "no chat"}})
    assert (status, body["outcome"]) == (200, "ignored")
    assert chat.fake.calls == [] and await chat.count(telegram_updates) == 0
    # Later updates are handled as ever.
    assert (await chat.say(CHAT, "12345"))[0].startswith("✅ Показания приняты")
    assert await chat.count(readings) == 1
    async with chat.http.get(f"http://127.0.0.1:{chat.gateway.port}/healthz") as resp:
        assert (await resp.json())["checks"]["telegram"]["ignored"] == 3


async def test_what_is_not_from_telegram_is_still_refused(chat: Chat) -> None:
    status, body = await chat.post(FUTURE, secret="wrong")
    assert status == 401
    status, body = await chat.post({}, raw=b"\x00{not json")
    assert status == 400 and body["error"]["code"] == "malformed_json"
    status, body = await chat.post({"update_id": "7003"})
    assert status == 400 and body["error"]["code"] == "bad_update"
    status, body = await chat.post({}, raw=b'{"update_id": 7004, "x": "' + b"a" * (5 * 1024 * 1024) + b'"}')
    assert status == 413
    assert await chat.count(telegram_updates) == 0


async def test_polling_skips_an_unknown_update_and_goes_on(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeBotApi
) -> None:
    gateway = Gateway(telegram_config(db_url, tmp_path, fake, mode="polling", webhook_secret=""), clock=clock)
    await gateway.start()
    try:
        await TelegramStore(gateway.engine, clock).link(CHAT, CHAT, "1000001", "test")
        await fake.queue(FUTURE, message_update(7010, CHAT, "12345"))
        await fake.wait_for(lambda: bool(fake.texts(CHAT)) and fake.texts(CHAT)[-1].startswith("✅"))
        await fake.wait_for(lambda: any(int(c.params.get("offset", 0)) == 7011 for c in fake.calls))
    finally:
        await gateway.stop()


async def test_a_chat_speaks_only_for_the_accounts_linked_to_it(chat: Chat) -> None:
    replies = await chat.say(CHAT, "1000002 200 100")
    assert replies == [
        "Л/с 1000002 не привязан к этому чату. Чтобы передавать по нему показания, привяжите его: /link"
    ]
    # A meter of another account, named on the linked one.
    replies = await chat.say(CHAT, "1000001#M-2#12345")
    assert len(replies) == 1 and "M-2" in replies[0] and "1000002" not in replies[0]
    assert await chat.count(readings) == 0
    # Another chat, linked to nothing, gets nothing stored either.
    assert (await chat.say(CHAT + 1, "1000001 12345"))[0].startswith("Чтобы передавать показания")
    assert await chat.count(readings) == 0 and await chat.count(inbound) <= 1
