"""Meter photos on the web pages: the cabinet's reading form carries an optional photo (a file
upload, `multipart/form-data`), and the cabinet and the desk show the photo kept with a reading
(gateway/photos.py keeps it without its metadata, with a thumbnail).

The form is streamed part by part after its CSRF token (adapters/web/csrf.py reads that first
part). The photo is read at most to `[photos] max_bytes` and not a byte further, so it is not
bounded by `http.max_body_bytes`. Text fields are read up to 256 characters each, 20 of them at
most. A form without a file (an older page, a script) is read as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web

from adapters.web import pages
from adapters.web.csrf import MULTIPART, form_read
from gateway import photos
from gateway.app_keys import CLOCK, CONFIG, ENGINE

FIELD_CHARS = 256
MAX_FIELDS = 20
_CHUNK = 64 * 1024


@dataclass
class ReadingForm:
    """A reading form's fields, and the photo sent with it (None: none chosen)."""

    fields: dict[str, str] = field(default_factory=dict)
    photo: bytes | None = None
    refused: photos.PhotoRefused | None = None  # a photo already too large to read on


async def _text(part: BodyPartReader) -> str:
    data = bytearray()
    while len(data) <= FIELD_CHARS * 4 and (chunk := await part.read_chunk(1024)):
        data += chunk
    await part.release()
    return data.decode("utf-8", "replace")[:FIELD_CHARS]


async def reading_form(request: web.Request) -> ReadingForm:
    """The submitted form, its photo read within `[photos] max_bytes`."""
    reader = request.get(MULTIPART)
    if reader is None:
        posted = await request.post()
        return ReadingForm({k: v for k, v in posted.items() if isinstance(v, str)})
    config = request.config_dict[CONFIG].photos
    form = ReadingForm()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.name != "photo":
            if len(form.fields) < MAX_FIELDS:
                form.fields[part.name] = await _text(part)
            else:
                await part.release()
            continue
        data = bytearray()
        while chunk := await part.read_chunk(_CHUNK):
            data += chunk
            if len(data) > config.max_bytes:
                form.refused = photos.too_large(config)
                await part.release()
                break
        if form.refused is None and data and part.filename:
            form.photo = bytes(data)
    form_read(request)
    return form


async def keep(request: web.Request, form: ReadingForm, receipt: int, channel: str) -> None:
    """Keep the form's photo with the reading; the next page says when it could not be."""
    refused = form.refused
    if form.photo is not None:
        engine = request.config_dict[ENGINE]
        config = request.config_dict[CONFIG].photos
        try:
            await photos.keep(engine, config, receipt, channel, form.photo, request.config_dict[CLOCK]())
        except photos.PhotoRefused as exc:
            refused = exc
    if refused is not None:
        await pages.notify(request, refused.message_ru + ". Показания переданы без фото.")


async def photo_response(request: web.Request, receipt: int) -> web.Response:
    """The kept photo of a receipt (`?thumb=1`: its thumbnail) as JPEG; 404 when there is none.
    The caller has checked that whoever asks may see the receipt."""
    found = await photos.photo_of(
        request.config_dict[ENGINE], receipt, thumb=request.query.get("thumb") == "1"
    )
    if found is None:
        raise web.HTTPNotFound()
    return web.Response(
        body=found, content_type=photos.CONTENT_TYPE, headers={"Cache-Control": "private, no-store"}
    )
