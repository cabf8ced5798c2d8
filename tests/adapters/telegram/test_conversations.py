"""Telegram end to end: a real gateway with the channel on, updates posted to its real webhook
route, replies recorded by a local Bot API server (tests/adapters/telegram/fake_bot_api.py); on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from sqlalchemy import func, select

from adapters.telegram.storage import DatabaseStorage, TelegramStore
from adapters.telegram.tables import telegram_link_attempts, telegram_updates
from gateway import accounts
from gateway.config import Config, ConfigError, load_config
from gateway.privacy import chat_ref
from gateway.service import Gateway
from gateway.store.schema import audit, inbound, readings
from tests.adapters.telegram.fake_bot_api import (
    BOT_ID,
    TOKEN,
    FakeBotApi,
    buttons,
    callback_update,
    contact_update,
    message_update,
)
from tests.conftest import BILLING_TOKEN, FakeClock, make_config

SECRET = "test-webhook-secret_1"
CHAT = 501
OTHER = 502


def telegram_config(
    db_url: str,
    tmp_path: Path,
    fake: FakeBotApi,
    sections: dict[str, dict[str, object]] | None = None,
    **over: object,
) -> Config:
    """The gateway with the bot on; `over` are `[telegram]` keys, `sections` other sections."""
    settings: dict[str, object] = {
        "enabled": True,
        "token": TOKEN,
        "mode": "webhook",
        "webhook_secret": SECRET,
        "api_base": fake.base,
        "poll_timeout_seconds": 1,
        "reminders": False,  # the reminder job would run at start-up; the reminder test runs it itself
    }
    settings.update(over)
    # The db_url fixture has migrated the database already.
    return make_config(
        db_url, tmp_path, telegram=settings, database={"auto_upgrade": False}, **(sections or {})
    )


@dataclass
class Chat:
    """The test's side of the conversation: posts updates to the gateway's real webhook route."""

    gateway: Gateway
    http: aiohttp.ClientSession
    fake: FakeBotApi
    clock: FakeClock
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port}/channels/telegram/webhook"

    async def post(
        self, update: dict[str, Any], secret: str | None = SECRET, raw: bytes | None = None
    ) -> tuple[int, Any]:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        body = raw if raw is not None else orjson.dumps(update)
        async with self.http.post(self.url, data=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def deliver(self, update: dict[str, Any]) -> list[dict[str, Any]]:
        """Post one update as Telegram would; returns the calls the bot made meanwhile."""
        before = len(self.fake.calls)
        status, body = await self.post(update)
        assert status == 200, body
        return [{"method": c.method, **c.params} for c in self.fake.calls[before:]]

    async def say(self, chat_id: int, text: str) -> list[str]:
        """The resident types `text`; returns the texts the bot sent to the chat in reply."""
        calls = await self.deliver(message_update(next(self.ids), chat_id, text))
        return [c["text"] for c in calls if c["method"] == "sendMessage" and int(c["chat_id"]) == chat_id]

    async def press(
        self, chat_id: int, data: str, message_id: int = 1, text: str = "…"
    ) -> list[dict[str, Any]]:
        return await self.deliver(callback_update(next(self.ids), chat_id, data, message_id, text))

    async def share_contact(self, chat_id: int, phone: str, owner: int | None = None) -> list[str]:
        calls = await self.deliver(contact_update(next(self.ids), chat_id, phone, owner))
        return [c["text"] for c in calls if c["method"] == "sendMessage"]

    async def link(self, chat_id: int, account: str) -> None:
        """Link by sharing the chat's own contact: the account's first registered phone."""
        linked = await TelegramStore(self.gateway.engine, self.clock).links(chat_id)
        await self.say(chat_id, "/link" if linked else "/start")
        await self.say(chat_id, account)
        phone = (await accounts.phones_of_account(self.gateway.engine, account))[0]
        replies = await self.share_contact(chat_id, phone)
        assert replies and replies[0] == f"✅ Л/с {account} привязан к этому чату.", replies

    async def count(self, table: Any) -> int:
        async with self.gateway.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


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
    async with aiohttp.ClientSession() as http:
        yield Chat(gateway, http, fake, clock)
    await gateway.stop()


# -- linking --------------------------------------------------------------------------------------


async def test_an_unlinked_chat_is_asked_to_link_and_nothing_is_stored(chat: Chat) -> None:
    assert await chat.say(CHAT, "12345") == [
        "Чтобы передавать показания, привяжите лицевой счёт: нажмите /start."
    ]
    assert await chat.say(CHAT, "/history") == [
        "Чтобы передавать показания, привяжите лицевой счёт: нажмите /start."
    ]
    assert await chat.count(readings) == 0 and await chat.count(inbound) == 0
    assert await chat.count(telegram_updates) == 2  # the updates themselves are stored


async def test_linking_with_the_shared_contact_then_a_reading_is_accepted(chat: Chat) -> None:
    replies = await chat.say(CHAT, "/start")
    assert replies[0].startswith("Здравствуйте! Это бот приёма показаний")
    assert "Пришлите номер лицевого счёта" in replies[0]
    await chat.say(CHAT, "1000001")
    ask = chat.fake.sent(CHAT)[-1]
    assert "Подтвердите, что это ваш л/с 1000001" in ask["text"]
    assert ask["reply_markup"]["keyboard"][0][0]["request_contact"] is True

    # Someone else's contact card proves nothing.
    assert await chat.share_contact(CHAT, "+79161234567", owner=999) == [
        "Нужен ваш собственный номер: нажмите кнопку «Поделиться номером»."
    ]
    # Telegram sends the phone without "+": it still matches the registry's E.164.
    replies = await chat.share_contact(CHAT, "79161234567")
    assert replies[0] == "✅ Л/с 1000001 привязан к этому чату."
    assert replies[1].startswith("Здравствуйте! К этому чату привязан л/с 1000001.")

    update = message_update(2001, CHAT, "12345,6")
    calls = await chat.deliver(update)
    assert [c["text"] for c in calls if c["method"] == "sendMessage"] == [
        "✅ Показания приняты\nЛ/с 1000001, счётчик M-1\nПоказание: 12 345.6 кВт·ч\n"
        "Квитанция № 1, учтём за ноябрь 2026 г."
    ]
    async with chat.gateway.engine.connect() as conn:
        row = (await conn.execute(select(inbound))).one()
        reading = (await conn.execute(select(readings))).one()
    assert row.channel == "telegram" and row.channel_message_id == "2001"
    assert orjson.loads(row.payload) == update  # the update JSON as received
    assert reading.source == f"telegram:{chat_ref(CHAT)}" and reading.value == "12345.6"


async def test_the_last_four_digits_are_refused_by_default(chat: Chat) -> None:
    await chat.say(CHAT, "/start")
    ask = (await chat.say(CHAT, "1000001"))[0]
    assert "4 цифры" not in ask and "Получить код по SMS" not in ask  # no SMS route here: no code
    assert await chat.say(CHAT, "4567") == [
        "Пришлите 6 цифр кода из SMS, или нажмите «Поделиться номером». Отменить: /cancel"
    ]
    assert await chat.count(telegram_link_attempts) == 0  # not even checked
    assert await TelegramStore(chat.gateway.engine, chat.clock).links(CHAT) == []


async def test_linking_with_the_last_four_digits_when_enabled_and_a_wrong_factor_is_limited(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeBotApi
) -> None:
    config = telegram_config(db_url, tmp_path, fake, {"verification": {"phone_digits": True}})
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    try:
        async with aiohttp.ClientSession() as http:
            await _digits_are_limited(Chat(gateway, http, fake, clock))
    finally:
        await gateway.stop()


async def _digits_are_limited(chat: Chat) -> None:
    await chat.say(CHAT, "/start")
    ask = await chat.say(CHAT, "10000")
    assert ask[0].startswith("Подтвердите, что это ваш л/с 10000")  # unknown: not told
    assert "последние 4 цифры этого телефона" in ask[0]
    assert (await chat.say(CHAT, "1234"))[0].startswith("Не совпадает с телефоном, указанным для л/с 10000")
    assert (await chat.say(CHAT, "12"))[0].startswith(
        "Пришлите 6 цифр кода из SMS или 4 последние"
    )  # not counted
    await chat.say(CHAT, "/start")
    await chat.say(CHAT, "1000001")
    for guess in ("0000", "1111", "2222", "3333", "5555"):  # the account's five from this chat
        assert (await chat.say(CHAT, guess))[0].startswith("Не совпадает")
    # The sixth waits, even the right digits; the wait doubles with every further failure.
    assert (await chat.say(CHAT, "4567"))[0].startswith(
        "Слишком много неудачных попыток. Попробуйте ещё раз через 2 секунды"
    )
    assert await TelegramStore(chat.gateway.engine, chat.clock).links(CHAT) == []
    chat.clock.advance(seconds=3)
    await chat.say(CHAT, "/start")
    await chat.say(CHAT, "1000001")
    assert (await chat.say(CHAT, "6666"))[0].startswith("Не совпадает")
    await chat.say(CHAT, "/start")
    await chat.say(CHAT, "1000001")
    assert "через 4 секунды" in (await chat.say(CHAT, "4567"))[0]
    chat.clock.advance(seconds=5)
    await chat.say(CHAT, "/start")
    await chat.say(CHAT, "1000001")
    assert (await chat.say(CHAT, "4567"))[0] == "✅ Л/с 1000001 привязан к этому чату."
    # Another chat is limited on its own: the stranger's failures did not slow it down.
    await chat.say(OTHER, "/start")
    await chat.say(OTHER, "1000001")
    assert (await chat.say(OTHER, "4567"))[0] == "✅ Л/с 1000001 привязан к этому чату."


async def test_a_chat_may_link_several_accounts_and_is_asked_which_one(chat: Chat) -> None:
    await chat.link(CHAT, "1000005")
    await chat.link(CHAT, "1000001")
    text_update = message_update(3001, CHAT, "12345")
    await chat.deliver(text_update)
    ask = chat.fake.sent(CHAT)[-1]
    assert ask["text"] == "К чату привязано несколько л/с. Выберите, для какого эти показания:"
    assert buttons(ask) == [("Л/с 1000001", "a:1000001"), ("Л/с 1000005", "a:1000005"), ("Отмена", "cancel")]
    calls = await chat.press(CHAT, "a:1000005")
    assert calls[0]["method"] == "answerCallbackQuery"
    assert calls[-1]["text"].startswith(
        "✅ Показания приняты\nЛ/с 1000005, счётчик M-5\nПоказание: 12 345 кВт·ч"
    )
    async with chat.gateway.engine.connect() as conn:
        row = (await conn.execute(select(inbound.c.channel_message_id, inbound.c.payload))).one()
    assert row.channel_message_id == "3001" and orjson.loads(row.payload) == text_update
    # A stale button does nothing; an account in the text needs no question; a foreign one is refused.
    stale = await chat.press(CHAT, "a:1000001")
    assert [c["method"] for c in stale] == ["answerCallbackQuery"]
    assert stale[0]["text"].startswith("Кнопка устарела") and stale[0]["show_alert"] == "true"
    assert (await chat.say(CHAT, "1000001 23456"))[0].startswith("✅ Показания приняты\nЛ/с 1000001")
    assert (await chat.say(CHAT, "1000002 23456"))[0].startswith("Л/с 1000002 не привязан к этому чату.")


# -- delivery -----------------------------------------------------------------------------------


async def test_a_redelivered_update_gets_no_second_reading_and_no_second_reply(chat: Chat) -> None:
    await chat.link(CHAT, "1000001")
    update = message_update(4001, CHAT, "12345")
    status, body = await chat.post(update)
    assert (status, body["outcome"]) == (200, "done")
    sent = len(chat.fake.calls)
    status, body = await chat.post(update)
    assert (status, body["outcome"]) == (200, "duplicate")
    # Two deliveries at the same moment: the chat's lock and the stored row let one through.
    twice = message_update(4002, CHAT, "12400")
    results = await asyncio.gather(chat.post(twice), chat.post(twice))
    assert sorted(b["outcome"] for _, b in results) == ["done", "duplicate"]
    assert len(chat.fake.calls) == sent + 1
    assert await chat.count(readings) == 2


async def test_the_webhook_checks_the_secret_and_refuses_what_is_not_an_update(chat: Chat) -> None:
    update = message_update(5001, CHAT, "/start")
    for secret in (None, "wrong"):
        status, body = await chat.post(update, secret=secret)
        assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = await chat.post(update, raw=b"{not json")
    assert status == 400 and body["error"]["code"] == "malformed_json"
    status, body = await chat.post({"update_id": "x"})
    assert status == 400 and body["error"]["code"] == "bad_update"
    # With the secret and an update_id it came from Telegram: acknowledged and ignored, or Telegram
    # would hold back every later update (tests/adapters/telegram/test_updates.py).
    status, body = await chat.post({"update_id": 5002, "message": {"text": "no chat"}})
    assert status == 200 and body["outcome"] == "ignored"
    assert chat.fake.calls == [] and await chat.count(telegram_updates) == 0


async def test_a_failed_reply_is_not_acknowledged_and_the_redelivery_sends_it_once(chat: Chat) -> None:
    await chat.say(CHAT, "/start")
    await chat.say(CHAT, "1000001")
    chat.fake.fail["sendmessage"] = 1  # Telegram is down while the chat gets linked
    update = contact_update(6001, CHAT, "+79161234567")
    status, body = await chat.post(update)
    assert status == 503 and body["error"]["code"] == "retry_later"  # Telegram will deliver it again
    assert await chat.count(readings) == 0
    sent = len(chat.fake.texts(CHAT))
    status, body = await chat.post(update)
    assert (status, body["outcome"]) == (200, "done")
    # The stored replies are sent; the contact is not handled again (no second link, no second reply).
    assert chat.fake.texts(CHAT)[sent:][0] == "✅ Л/с 1000001 привязан к этому чату."
    assert len(chat.fake.texts(CHAT)[sent:]) == 2 and await chat.count(readings) == 0
    status, body = await chat.post(update)
    assert (status, body["outcome"]) == (200, "duplicate")


async def test_group_chats_are_refused(chat: Chat) -> None:
    assert await chat.say(-100, "1000001 12345") == ["Показания принимаются только в личных сообщениях боту."]
    assert await chat.count(inbound) == 0


# -- readings -----------------------------------------------------------------------------------


async def _usual_history(chat: Chat) -> None:
    """Two months of about 10 kWh a day on M-1, so that 800 kWh in a month is unusual."""
    for value in ("1000", "1300", "1600"):
        assert (await chat.say(CHAT, value))[0].startswith("✅ Показания приняты")
        chat.clock.advance(days=30)


async def test_an_unusual_value_is_confirmed_with_the_button(chat: Chat) -> None:
    await chat.link(CHAT, "1000001")
    await _usual_history(chat)
    await chat.say(CHAT, "2400")
    held_msg = chat.fake.sent(CHAT)[-1]
    assert held_msg["text"].startswith(
        "⚠️ Проверьте показания\nЛ/с 1000001, счётчик M-1\nПоказание: 2 400 кВт·ч\n• "
    )
    assert "расход 800 кВт·ч, обычно 210-480" in held_msg["text"]
    receipt = int(buttons(held_msg)[0][1][3:])
    assert buttons(held_msg) == [("Подтвердить", f"cf:{receipt}"), ("Исправить", f"fx:{receipt}")]

    # Another chat cannot confirm it, even with the button's data.
    await chat.link(OTHER, "1000002")
    calls = await chat.press(OTHER, f"cf:{receipt}")
    assert [(c["method"], c.get("text")) for c in calls] == [("answerCallbackQuery", "Показания не найдены")]

    calls = await chat.press(CHAT, f"cf:{receipt}", message_id=77, text=held_msg["text"])
    edit = next(c for c in calls if c["method"] == "editMessageText")
    assert int(edit["message_id"]) == 77 and "reply_markup" not in edit
    assert edit["text"].startswith("✅ Показания приняты\nЛ/с 1000001, счётчик M-1\nПоказание: 2 400 кВт·ч")
    assert "• Показания подтверждены, приняты" in edit["text"]
    assert (calls[-1]["method"], calls[-1]["text"]) == ("answerCallbackQuery", "Подтверждено")
    async with chat.gateway.engine.connect() as conn:
        assert (
            await conn.execute(select(readings.c.verdict).where(readings.c.inbound_id == receipt))
        ).scalar() == "accepted"
        assert (await conn.execute(select(audit.c.actor))).scalar() == f"telegram:{chat_ref(CHAT)}"


async def test_correct_asks_for_the_value_again_and_da_confirms_by_text(chat: Chat) -> None:
    await chat.link(CHAT, "1000001")
    await _usual_history(chat)
    await chat.say(CHAT, "2400")
    receipt = int(buttons(chat.fake.sent(CHAT)[-1])[0][1][3:])
    calls = await chat.press(CHAT, f"fx:{receipt}", message_id=80, text="⚠️ Проверьте показания")
    edit = next(c for c in calls if c["method"] == "editMessageText")
    assert edit["text"] == "⚠️ Проверьте показания\n\n✏️ Исправление: введите показание заново."
    assert chat.fake.last_text(CHAT) == (
        "Л/с 1000001, счётчик M-1.\nПоказание: прежнее 1 600 от 16.01.2027.\n"
        "Введите текущее показание, например 12345 или 12345,6:"
    )
    assert (await chat.say(CHAT, "сто"))[0].startswith("Непонятно: «сто»")
    replies = await chat.say(CHAT, "1900")
    assert replies[0].startswith("✅ Показания приняты\nЛ/с 1000001, счётчик M-1\nПоказание: 1 900 кВт·ч")

    chat.clock.advance(days=30)
    await chat.say(CHAT, "4000")  # unusual again; this time the resident answers "да"
    assert chat.fake.last_text(CHAT).startswith("⚠️ Проверьте показания")
    assert (await chat.say(CHAT, "Да"))[0].startswith(
        "✅ Показания приняты\nЛ/с 1000001, счётчик M-1\nПоказание: 4 000"
    )
    assert (await chat.say(CHAT, "да"))[0].startswith("Нет показаний, ждущих подтверждения")


async def test_step_by_step_with_zone_buttons_and_the_previous_reading(chat: Chat) -> None:
    await chat.link(CHAT, "1000002")
    await chat.say(CHAT, "/reading")
    menu = chat.fake.sent(CHAT)[-1]
    assert menu["text"] == (
        "Л/с 1000002, счётчик M-2.\nТ1 (день): прежних показаний нет\nТ2 (ночь): прежних показаний нет\n"
        "Выберите зону и введите её показание:"
    )
    assert buttons(menu) == [("Т1 (день): —", "z:T1"), ("Т2 (ночь): —", "z:T2"), ("Отмена", "cancel")]
    await chat.press(CHAT, "z:T2")
    assert chat.fake.last_text(CHAT) == "Т2 (ночь): прежних показаний нет.\nВведите показание:"
    await chat.say(CHAT, "4567")
    await chat.press(CHAT, "send")  # not all zones yet: refused with an alert
    assert chat.fake.calls[-1].params["text"] == "Введите показания всех зон"
    await chat.press(CHAT, "z:T1")
    await chat.say(CHAT, "12345,6")
    menu = chat.fake.sent(CHAT)[-1]
    assert buttons(menu) == [
        ("Т1 (день): 12 345.6 ✓", "z:T1"),
        ("Т2 (ночь): 4 567 ✓", "z:T2"),
        ("✅ Отправить", "send"),
        ("Отмена", "cancel"),
    ]
    calls = await chat.press(CHAT, "send")
    assert calls[-1]["text"] == (
        "✅ Показания приняты\nЛ/с 1000002, счётчик M-2\nТ1 (день): 12 345.6 кВт·ч\nТ2 (ночь): 4 567 кВт·ч\n"
        "Квитанция № 1, учтём за ноябрь 2026 г."
    )
    chat.clock.advance(days=1)
    await chat.press(CHAT, "menu:read")
    assert chat.fake.last_text(CHAT).startswith(
        "Л/с 1000002, счётчик M-2.\nТ1 (день): прежнее 12 345.6 от 17.11.2026\nТ2 (ночь): прежнее 4 567 от 17.11.2026"
    )


async def test_an_account_with_two_meters_chooses_the_meter_by_button(chat: Chat) -> None:
    store = TelegramStore(chat.gateway.engine, chat.clock)
    await store.link(CHAT, CHAT, "1000004", "office")  # no phone registered: linked at the office
    await chat.say(CHAT, "12345")
    ask = chat.fake.sent(CHAT)[-1]
    assert ask["text"] == "У л/с 1000004 несколько счётчиков. Выберите счётчик:"
    assert buttons(ask)[:2] == [("Счётчик M-4A", "m:M-4A"), ("Счётчик M-4B", "m:M-4B")]
    calls = await chat.press(CHAT, "m:M-4B")
    assert calls[-1]["text"].startswith("✅ Показания приняты\nЛ/с 1000004, счётчик M-4B\nПоказание: 12 345")


async def test_history_shows_status_and_whether_billing_has_taken_them(chat: Chat) -> None:
    await chat.link(CHAT, "1000001")
    await chat.say(CHAT, "12345")
    async with chat.http.post(
        f"http://127.0.0.1:{chat.gateway.port}/api/v1/billing/batches",
        json={"limit": 10},
        headers={"Authorization": f"Bearer {BILLING_TOKEN}"},
    ) as resp:
        batch = await resp.json()
    chat.clock.advance(minutes=1)
    async with chat.http.post(
        f"http://127.0.0.1:{chat.gateway.port}/api/v1/billing/batches/{batch['batch_id']}/commit",
        headers={"Authorization": f"Bearer {BILLING_TOKEN}"},
    ) as resp:
        assert resp.status == 200
    chat.clock.advance(days=1)
    await chat.say(CHAT, "12300")  # lower than before: rejected
    await chat.say(CHAT, "12400")
    assert await chat.say(CHAT, "/history") == [
        "Л/с 1000001, последние показания:\n"
        "18.11.2026 · M-1 · 12 400 кВт·ч — принято, ещё не передано в расчёт (№ 3)\n"
        "18.11.2026 · M-1 · 12 300 кВт·ч — не принято: 12 300 меньше прежних 12 345 от 17.11. Проверьте (№ 2)\n"
        "17.11.2026 · M-1 · 12 345 кВт·ч — принято, в расчёте с 17.11.2026 (№ 1)"
    ]


# -- state across restarts, polling ---------------------------------------------------------------


async def test_a_conversation_continues_after_a_restart(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeBotApi
) -> None:
    config = telegram_config(db_url, tmp_path, fake)
    async with aiohttp.ClientSession() as http:
        first = Gateway(config, clock=clock)
        await first.start()
        chat = Chat(first, http, fake, clock)
        await chat.say(CHAT, "/start")
        await chat.say(CHAT, "1000002")  # waiting for the second factor now
        await first.stop()

        second = Gateway(config, clock=clock)
        await second.start()
        chat.gateway = second
        assert (await chat.share_contact(CHAT, "+79161234568"))[0] == "✅ Л/с 1000002 привязан к этому чату."
        await chat.say(CHAT, "/reading")
        await chat.press(CHAT, "z:T1")  # waiting for the value of T1 now
        await second.stop()

        third = Gateway(config, clock=clock)
        await third.start()
        chat.gateway = third
        await chat.say(CHAT, "12345")
        assert buttons(fake.sent(CHAT)[-1])[0] == ("Т1 (день): 12 345 ✓", "z:T1")
        await third.stop()


async def test_polling_mode_reads_get_updates_and_confirms_by_offset(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeBotApi
) -> None:
    gateway = Gateway(telegram_config(db_url, tmp_path, fake, mode="polling", webhook_secret=""), clock=clock)
    fake.webhook_url = "https://example.invalid/hook"  # left over from webhook mode: polling removes it
    await gateway.start()
    try:
        async with aiohttp.ClientSession() as http:
            status, _ = await Chat(gateway, http, fake, clock).post(message_update(1, CHAT, "/start"))
            assert status == 404  # no webhook route in polling mode
        await fake.queue(
            message_update(10, CHAT, "/start"),
            message_update(11, CHAT, "1000001"),
            contact_update(12, CHAT, "+7 916 123-45-67"),
        )
        await fake.wait_for(lambda: any("привязан к этому чату" in t for t in fake.texts(CHAT)))
        await fake.queue(message_update(13, CHAT, "12345"))
        await fake.wait_for(lambda: fake.texts(CHAT)[-1].startswith("✅ Показания приняты"))
        assert fake.sent(method="deleteWebhook") and fake.webhook_url == ""
        await fake.wait_for(lambda: any(int(c.params.get("offset", 0)) == 14 for c in fake.calls))
        # Telegram hands out an update again (say it lost our offset): recognised, not answered.
        sent = len(fake.texts(CHAT))
        fake.again.append(message_update(13, CHAT, "12345"))
        await fake.queue(message_update(14, CHAT, "/help"))
        await fake.wait_for(lambda: len(fake.texts(CHAT)) > sent)
        await asyncio.sleep(0.2)
        assert fake.texts(CHAT)[sent:] == [fake.texts(CHAT)[-1]] and fake.texts(CHAT)[-1].startswith(
            "Как передать"
        )
        async with gateway.engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(readings))).scalar_one() == 1
        status_code, health = 0, {}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{gateway.port}/healthz") as resp,
        ):
            status_code, health = resp.status, await resp.json()
        assert status_code == 200 and health["checks"]["telegram"]["mode"] == "polling"
        assert health["checks"]["telegram"]["redelivered"] == 1
    finally:
        await gateway.stop()


# -- pieces -------------------------------------------------------------------------------------


async def test_the_fsm_storage_keeps_state_and_data_in_the_database(db_url: str, clock: FakeClock) -> None:
    from aiogram.fsm.storage.base import StorageKey

    from gateway.store.database import create_engine

    engine = create_engine(db_url)
    try:
        key = StorageKey(bot_id=BOT_ID, chat_id=CHAT, user_id=CHAT)
        first = DatabaseStorage(engine, clock)
        assert await first.get_state(key) is None and await first.get_data(key) == {}
        await first.set_state(key, "Flow:value")
        await first.update_data(key, {"zone": "T1", "values": {"T2": "4567"}})
        second = DatabaseStorage(engine, clock)  # as after a restart
        assert await second.get_state(key) == "Flow:value"
        assert await second.get_data(key) == {"zone": "T1", "values": {"T2": "4567"}}
        await second.set_state(key, None)
        assert await second.get_state(key) is None and await second.get_value(key, "zone") == "T1"
        other = StorageKey(bot_id=BOT_ID, chat_id=OTHER, user_id=OTHER)
        assert await second.get_data(other) == {}
    finally:
        await engine.dispose()


def test_the_configuration_names_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="telegram: .*token must be the bot token"):
        load_config(None, {"GATEWAY_TELEGRAM_ENABLED": "true"})
    with pytest.raises(ConfigError, match="webhook mode needs webhook_secret"):
        load_config(None, {"GATEWAY_TELEGRAM_ENABLED": "true", "GATEWAY_TELEGRAM_TOKEN": TOKEN})
    config = load_config(
        None,
        {
            "GATEWAY_TELEGRAM_ENABLED": "true",
            "GATEWAY_TELEGRAM_TOKEN": TOKEN,
            "GATEWAY_TELEGRAM_MODE": "polling",
            "GATEWAY_TELEGRAM_API_BASE": "http://127.0.0.1:8081",
        },
    )
    assert config.telegram.mode == "polling"


async def test_reminders_go_to_linked_chats_until_they_say_stop(chat: Chat) -> None:
    from datetime import UTC, datetime

    from adapters.telegram.channel import TelegramChannel
    from adapters.telegram.notifier import TelegramNotifier
    from gateway.reminders import ReminderJob

    await chat.link(CHAT, "1000001")
    await chat.link(CHAT, "1000005")
    await chat.link(OTHER, "1000002")
    gw = chat.gateway
    channel = TelegramChannel(gw.config, gw.engine, gw.intake, chat.clock)
    job = ReminderJob(gw.engine, gw.config, gw.calendar, chat.clock, [TelegramNotifier(channel)])
    chat.clock.now = datetime(2026, 12, 15, 8, 0, tzinfo=UTC)  # 11:00 in Moscow, the window opens
    await chat.say(OTHER, "Т1 200 Т2 60")  # December's reading of 1000002 is in
    assert await job.run_once() == 1
    assert chat.fake.last_text(CHAT) == (
        "Пора передать показания за декабрь: л/с 1000001, 1000005, приём до 25.12.\n"
        "Пришлите показание сообщением или нажмите /reading.\nНе напоминать: /stop"
    )
    assert await job.run_once() == 0  # never twice
    assert await chat.say(CHAT, "стоп") == [
        "Напоминания отключены. Включить снова: /remind. Отвязать л/с от чата: /unlink"
    ]
    chat.clock.now = datetime(2026, 12, 25, 8, 0, tzinfo=UTC)  # the last day
    assert await job.run_once() == 0
    on = ["Напоминания о передаче показаний включены. Отключить: /stop"]
    assert await chat.say(CHAT, "старт") == on
    assert await chat.say(CHAT, "/remind") == on  # the command says the same (and changes nothing)
    assert await job.run_once() == 1
    assert chat.fake.last_text(CHAT).startswith("Сегодня последний день приёма показаний за декабрь")
    await channel.close()


async def test_help_and_unknown_commands_store_nothing(chat: Chat) -> None:
    await chat.link(CHAT, "1000001")
    for text in ("/help", "помощь", "/nosuchcommand"):
        replies = await chat.say(CHAT, text)
        assert replies[0].startswith("Как передать показания:\n• сообщением: 12345"), text
    assert (await chat.say(CHAT, "привет как дела"))[0] == (
        "❌ Показания не приняты\nЛ/с 1000001\n• Непонятно: «как». Пример: 1234567 12345 (ЛС показание)\n"
        "Проверьте и пришлите снова. Помощь: /help"
    )
    assert await chat.count(readings) == 0 and await chat.count(inbound) == 1  # the refusal is stored
