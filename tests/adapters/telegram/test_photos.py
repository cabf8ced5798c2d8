"""Meter photos sent to the bot: the caption is the reading, the photo is downloaded from the
(local) Bot API and kept with the reading without its metadata; on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from PIL import Image
from sqlalchemy import select

from gateway.service import Gateway
from gateway.store.schema import inbound, readings
from gateway.store.schema_photos import reading_photos
from tests.adapters.telegram.fake_bot_api import FakeBotApi, buttons, photo_update
from tests.adapters.telegram.test_conversations import CHAT, Chat, telegram_config
from tests.adapters.telegram.test_conversations import fake as fake  # noqa: F401 - the fixture
from tests.conftest import FakeClock
from tests.gateway.test_photos import camera_jpeg

KEPT = "📷 Фото счётчика сохранено вместе с показаниями."


@pytest.fixture
async def chat(db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeBotApi) -> AsyncIterator[Chat]:  # noqa: F811
    config = telegram_config(db_url, tmp_path, fake, {"photos": {"max_bytes": 200 * 1024}})
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    async with aiohttp.ClientSession() as http:
        yield Chat(gateway, http, fake, clock)
    await gateway.stop()


async def texts_of(chat: Chat, update: dict[str, object]) -> list[str]:
    return [str(c["text"]) for c in await chat.deliver(update) if c["method"] == "sendMessage"]


async def photos(chat: Chat) -> dict[str, bytes]:
    """Each kept photo by its reading's channel message id (the update id)."""
    async with chat.gateway.engine.connect() as conn:
        rows = await conn.execute(
            select(inbound.c.channel_message_id, reading_photos.c.image).join(
                inbound, inbound.c.id == reading_photos.c.inbound_id
            )
        )
        return {mid: bytes(image) for mid, image in rows.all()}


async def test_a_photo_with_the_reading_in_its_caption_is_kept_without_its_metadata(chat: Chat) -> None:
    await chat.link(CHAT, "1000001")
    sent = camera_jpeg(1600, 1200)
    chat.fake.files.update({"small": camera_jpeg(320, 240), "large": sent, "huge": sent + b"\0" * 300_000})
    update = photo_update(3001, CHAT, "12345", [("small", 9_000), ("large", len(sent)), ("huge", 600_000)])
    calls = await chat.deliver(update)
    (answer,) = [c["text"] for c in calls if c["method"] == "sendMessage"]
    assert answer.startswith("✅ Показания приняты\nЛ/с 1000001, счётчик M-1\nПоказание: 12 345 кВт·ч")
    assert answer.endswith("\n\n" + KEPT)
    assert [c["file_id"] for c in calls if c["method"] == "getFile"] == ["large"]  # the largest that fits
    kept = (await photos(chat))["3001"]
    image = Image.open(io.BytesIO(kept))
    assert image.size == (1200, 1600) and not image.getexif() and b"PhoneMaker" not in kept
    # Telegram delivers the update again: no second reading, photo or answer.
    assert [c for c in await chat.deliver(update) if c["method"] in ("sendMessage", "getFile")] == []
    async with chat.gateway.engine.connect() as conn:
        assert len((await conn.execute(select(readings.c.id))).all()) == 1


async def test_photos_that_cannot_be_kept_and_photos_without_a_reading(chat: Chat) -> None:
    await chat.link(CHAT, "1000001")
    assert await texts_of(chat, photo_update(3101, CHAT, None, [("p1", 10_000)])) == [
        "Фото счётчика принимаем вместе с показанием: отправьте фото ещё раз и напишите показание "
        "в подписи к нему, например 12345."
    ]
    chat.fake.files["garbage"] = b"not a picture at all"
    replies = await texts_of(chat, photo_update(3102, CHAT, "12345", [("garbage", 20)], document=True))
    assert replies[0].startswith("✅ Показания приняты")  # the reading stands on its own
    assert replies[0].endswith("Фото не сохранено: это не фотография в JPEG, PNG или WebP")
    replies = await texts_of(chat, photo_update(3103, CHAT, "12400", [("too-big", 900_000)]))
    assert replies[0].endswith("Фото не сохранено: больше 200 КБ")  # not even fetched
    assert await photos(chat) == {}


async def test_a_photo_waits_in_the_conversation_while_the_account_is_chosen(chat: Chat) -> None:
    await chat.link(CHAT, "1000001")
    await chat.link(CHAT, "1000002")  # two accounts linked: the bot asks which one
    chat.fake.files["m2"] = camera_jpeg(800, 600, 1)
    calls = await chat.deliver(photo_update(3201, CHAT, "Т1 12345 Т2 6789", [("m2", 40_000)]))
    ask = [c for c in calls if c["method"] == "sendMessage"][-1]
    assert ("Л/с 1000002", "a:1000002") in buttons(ask)
    calls = await chat.press(CHAT, "a:1000002")
    (answer,) = [c["text"] for c in calls if c["method"] == "sendMessage"]
    assert "Л/с 1000002, счётчик M-2" in answer and answer.endswith(KEPT)
    assert list(await photos(chat)) == ["3201"]
