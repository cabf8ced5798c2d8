"""Meter photos: what is kept is upright, scaled, with a thumbnail and without any metadata (GPS
above all); what cannot be kept is refused with its reason; kept once per receipt, both databases."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from PIL import Image, TiffImagePlugin
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import PhotosConfig
from gateway.model import Channel
from gateway.photos import PhotoRefused, keep, photo_of, prepare
from gateway.store.schema import inbound

NOW = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)


def camera_jpeg(width: int = 4000, height: int = 3000, orientation: int = 6) -> bytes:
    """A photo as a phone writes it: EXIF with the camera, the time, GPS, and the orientation."""
    image = Image.new("RGB", (width, height), (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, width // 2, height // 2))  # a corner to tell rotation by
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0132] = "2026:11:17 12:00:00"  # DateTime
    exif[0x0112] = orientation  # Orientation: 6 = rotate 90 clockwise to view
    exif[0x8825] = {  # GPS IFD: 55°45' N, 37°37' E
        1: "N",
        2: (TiffImagePlugin.IFDRational(55), TiffImagePlugin.IFDRational(45), TiffImagePlugin.IFDRational(0)),
        3: "E",
        4: (TiffImagePlugin.IFDRational(37), TiffImagePlugin.IFDRational(37), TiffImagePlugin.IFDRational(0)),
    }
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=90)
    return out.getvalue()


def test_metadata_is_stripped_the_photo_turned_upright_and_scaled() -> None:
    sent = camera_jpeg()
    assert b"PhoneMaker" in sent and Image.open(io.BytesIO(sent)).getexif().get_ifd(0x8825)
    kept = prepare(sent, PhotosConfig())
    image = Image.open(io.BytesIO(kept.image))
    assert image.format == "JPEG" and (image.width, image.height) == (kept.width, kept.height) == (1536, 2048)
    assert not image.getexif() and b"Exif" not in kept.image and b"PhoneMaker" not in kept.image
    assert "xmp" not in image.info and "icc_profile" not in image.info
    # upright: the blue corner, top-left as shot, is top-right once turned 90 degrees clockwise
    top_right, top_left = image.getpixel((image.width - 10, 10)), image.getpixel((10, 10))
    assert isinstance(top_right, tuple) and isinstance(top_left, tuple)
    assert top_right[2] > 150 and top_left[0] > 150
    thumb = Image.open(io.BytesIO(kept.thumb))
    assert max(thumb.size) == 320 and not thumb.getexif()
    assert kept.sent_bytes == len(sent)


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (0, 0, 0, 0)).save(out, "PNG")
    return out.getvalue()


def test_what_cannot_be_kept_is_refused_with_its_reason() -> None:
    config = PhotosConfig(max_bytes=64 * 1024, max_pixels=1_000_000)
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, "GIF")
    cases = {
        b"1000001 12345": "not_an_image",
        gif.getvalue(): "not_an_image",
        camera_jpeg(800, 600)[:3000]: "not_an_image",  # cut off
        _png(1001, 1000): "too_many_pixels",
        camera_jpeg(3000, 3000) + b"\0" * 70 * 1024: "too_large",
    }
    for data, code in cases.items():
        with pytest.raises(PhotoRefused) as refused:
            prepare(data, config)
        assert refused.value.code == code
        assert refused.value.message_ru.startswith("Фото не сохранено")
    assert prepare(_png(1000, 1000), config).width == 1000  # PNG (its alpha dropped) is fine


async def test_kept_once_with_its_receipt(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        inserted = (
            await conn.execute(
                inbound.insert().values(
                    channel=Channel.TELEGRAM.value,
                    channel_message_id="1",
                    received_at=NOW,
                    source="telegram:#1",
                    payload="",
                    response="{}",
                )
            )
        ).inserted_primary_key
    assert inserted is not None
    receipt = int(inserted[0])
    first = await keep(engine, PhotosConfig(), receipt, "telegram", camera_jpeg(800, 600, 1), NOW)
    await keep(engine, PhotosConfig(), receipt, "telegram", _png(100, 100), NOW)  # a redelivery: ignored
    assert await photo_of(engine, receipt) == first.image
    assert await photo_of(engine, receipt, thumb=True) == first.thumb
    assert await photo_of(engine, receipt + 1) is None
