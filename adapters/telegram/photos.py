"""Meter photos sent to the bot with a reading in the caption: which of Telegram's sizes to take,
its download (bounded by `[photos] max_bytes` while it arrives), and keeping it with the
reading's receipt (gateway/photos.py strips its metadata and makes the thumbnail).

The photo travels through the conversation as its file id (JSON in the conversation's state), so
a reading whose account or meter is asked with buttons keeps its photo until it is submitted.
A photo that cannot be kept does not stop its reading: the answer says why.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from aiogram.exceptions import TelegramBadRequest, TelegramNotFound
from aiogram.types import Message

from adapters.telegram import texts
from gateway import photos
from gateway.model import Channel

if TYPE_CHECKING:
    from adapters.telegram.channel import TelegramChannel

IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp"}  # an image sent as a file, uncompressed
NOT_FROM_TELEGRAM = "Фото не сохранено: Telegram его не отдал, пришлите ещё раз"


def chosen(message: Message, max_bytes: int) -> dict[str, Any] | None:
    """The file to keep, as `{"file_id", "size"}`: the largest of a photo's sizes within
    `max_bytes` (Telegram sends each photo in several), or an image sent as a file."""
    if message.photo:
        fitting = [p for p in message.photo if (p.file_size or 0) <= max_bytes] or message.photo[:1]
        best = max(fitting, key=lambda p: p.width * p.height)
        return {"file_id": best.file_id, "size": best.file_size or 0}
    document = message.document
    if document is not None and document.mime_type in IMAGE_TYPES:
        return {"file_id": document.file_id, "size": document.file_size or 0}
    return None


class _Bounded(io.BytesIO):
    """The download's destination: refuses to grow past the limit, whatever the server says."""

    def __init__(self, limit: int, refusal: photos.PhotoRefused) -> None:
        super().__init__()
        self.limit = limit
        self.refusal = refusal

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.limit:
            raise self.refusal
        return super().write(data)


async def keep(tg: TelegramChannel, photo: dict[str, Any], receipt: int) -> str:
    """Download the photo and keep it with the reading of `receipt`; the line the answer adds."""
    config = tg.config.photos
    too_large = photos.too_large(config)
    if int(photo.get("size") or 0) > config.max_bytes:
        return too_large.message_ru
    try:
        found = await tg.bot.get_file(str(photo["file_id"]))
        if (found.file_size or 0) > config.max_bytes or not found.file_path:
            return too_large.message_ru if found.file_path else NOT_FROM_TELEGRAM
        data = _Bounded(config.max_bytes, too_large)
        await tg.bot.download_file(found.file_path, destination=data)
        await photos.keep(tg.engine, config, receipt, Channel.TELEGRAM.value, data.getvalue(), tg.clock())
    except photos.PhotoRefused as refused:
        return refused.message_ru
    except (TelegramBadRequest, TelegramNotFound):  # gone, or too big for the Bot API to hand out
        return NOT_FROM_TELEGRAM
    return texts.PHOTO_KEPT
