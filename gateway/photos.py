"""Meter photos as evidence: a photo a resident sends with a reading (a Telegram photo with the
reading as its caption, an upload in the cabinet) is kept with that reading, for the back office
to look at beside held and disputed readings.

What is kept is not what was sent. The photo is opened with Pillow only if it is JPEG, PNG or WebP
within `[photos] max_bytes` and `max_pixels`: its header is read before any pixel is decoded, so a
decompression bomb is refused unopened. It is turned upright by its EXIF orientation, and then
written anew as a JPEG from its pixels alone. So EXIF (GPS position, camera, time), XMP and
comments are gone. It is scaled down to `max_side` and gets a thumbnail of `thumb_side`. The
work runs in a thread, off the event loop. A photo that cannot be kept says why, in Russian, and
its reading is decided all the same. Doors call `keep` after the intake has answered with the
receipt; the rows are `reading_photos` (gateway/store/schema_photos.py).
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from datetime import datetime

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import PhotosConfig
from gateway.store.schema_photos import reading_photos

FORMATS = {"JPEG", "PNG", "WEBP"}
CONTENT_TYPE = "image/jpeg"


class PhotoRefused(Exception):
    """A photo that is not kept: `code` for logs and tests, `message_ru` for the sender."""

    def __init__(self, code: str, message_ru: str) -> None:
        super().__init__(code)
        self.code = code
        self.message_ru = message_ru


def size_text(config: PhotosConfig) -> str:
    """`max_bytes` as residents are told it: "10 МБ", "200 КБ"."""
    mib = config.max_bytes / (1024 * 1024)
    return f"{mib:g} МБ" if mib >= 1 else f"{config.max_bytes // 1024} КБ"


def too_large(config: PhotosConfig) -> PhotoRefused:
    return PhotoRefused("too_large", f"Фото не сохранено: больше {size_text(config)}")


def not_an_image() -> PhotoRefused:
    return PhotoRefused("not_an_image", "Фото не сохранено: это не фотография в JPEG, PNG или WebP")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A photo made fit to keep: a JPEG without metadata, its thumbnail, its size."""

    image: bytes
    thumb: bytes
    width: int
    height: int
    sent_bytes: int


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)  # nothing but pixels: no exif, xmp, icc
    return out.getvalue()


def prepare(data: bytes, config: PhotosConfig) -> Prepared:
    """The photo to keep, or PhotoRefused. CPU work: run it in a thread (`keep` does)."""
    if len(data) > config.max_bytes:
        raise too_large(config)
    try:
        with Image.open(io.BytesIO(data)) as opened:  # reads the header only
            if opened.format not in FORMATS:
                raise not_an_image()
            if opened.width * opened.height > config.max_pixels:
                raise PhotoRefused(
                    "too_many_pixels",
                    f"Фото не сохранено: больше {config.max_pixels // 1_000_000} Мпикс",
                )
            upright = ImageOps.exif_transpose(opened)  # as the camera held it, before EXIF goes
            pixels = upright.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError, ValueError):
        raise not_an_image() from None
    pixels.thumbnail((config.max_side, config.max_side))
    thumb = pixels.copy()
    thumb.thumbnail((config.thumb_side, config.thumb_side))
    return Prepared(_jpeg(pixels, 85), _jpeg(thumb, 80), pixels.width, pixels.height, len(data))


async def keep(
    engine: AsyncEngine, config: PhotosConfig, receipt: int, channel: str, data: bytes, now: datetime
) -> Prepared:
    """Keep the photo with the reading of `receipt` (its first photo stays: a redelivered message
    keeps nothing more); PhotoRefused says why it was not kept."""
    prepared = await asyncio.to_thread(prepare, data, config)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                reading_photos.insert().values(
                    inbound_id=receipt,
                    received_at=now,
                    channel=channel,
                    content_type=CONTENT_TYPE,
                    width=prepared.width,
                    height=prepared.height,
                    sent_bytes=prepared.sent_bytes,
                    image=prepared.image,
                    thumb=prepared.thumb,
                )
            )
    except IntegrityError:  # the receipt has its photo already
        pass
    return prepared


async def photo_of(engine: AsyncEngine, receipt: int, thumb: bool = False) -> bytes | None:
    """The kept photo (or its thumbnail) of a receipt, JPEG; None when there is none."""
    column = reading_photos.c.thumb if thumb else reading_photos.c.image
    async with engine.connect() as conn:
        found = (
            await conn.execute(select(column).where(reading_photos.c.inbound_id == receipt))
        ).scalar_one_or_none()
    return None if found is None else bytes(found)
