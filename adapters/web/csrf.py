"""CSRF protection of the web forms: every POST carries the session's token (`_csrf`), and a
form without it, or sent from another site, is refused with 403. A file upload (multipart)
carries it as its first field, read here without reading the file."""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp_session import Session, get_session

from gateway.app_keys import CONFIG

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def csrf_token(session: Session) -> str:
    """The session's CSRF token, made on first use; every form sends it back as `_csrf`."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


@web.middleware
async def csrf_protect(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse any state-changing request whose form lacks the session's token or comes cross-site."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return await handler(request)
    origin = request.headers.get("Origin")
    if origin and origin != "null" and re.sub(r"^https?://", "", origin) != request.host:
        raise web.HTTPForbidden(reason="cross-site form")
    session = await get_session(request)
    expected = session.get("csrf")
    if request.content_type == "multipart/form-data":
        # Only a handler that takes a file reads a multipart form; any other would find its body
        # half read, so such a form anywhere else is refused like one without a token.
        if not getattr(request.match_info.handler, TAKES_UPLOAD, False):
            raise web.HTTPForbidden(reason="csrf")
        return await _upload(request, handler, expected)
    try:
        form = await request.post()
    except ValueError:
        form = None
    _check(expected, form.get("_csrf") if form is not None else None)
    return await handler(request)


def _check(expected: object, sent: object) -> None:
    if not isinstance(expected, str) or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise web.HTTPForbidden(reason="csrf")


async def _upload(request: web.Request, handler: Handler, expected: object) -> web.StreamResponse:
    """A file upload: its token, then the handler, which streams the rest of the form.

    `body_deadline` leaves a multipart body unread, so the whole form (token, fields, file) must
    arrive within `http.body_timeout_seconds` of here, or 408 (a client dripping its upload holds
    nothing for long); the handler calls `form_read` once it has what it needs, so that what it
    then does (an import, a photo's re-encoding) does not count."""
    try:
        async with asyncio.timeout(request.config_dict[CONFIG].http.body_timeout_seconds) as deadline:
            request[UPLOAD_DEADLINE] = deadline
            _check(expected, await _multipart_token(request))
            return await handler(request)
    except TimeoutError:
        response = web.Response(status=408, text="the form did not arrive in time")
        response.force_close()
        return response
    except (ValueError, AssertionError, HttpProcessingError) as exc:
        # A form cut short or malformed after its token (a part's header with a NUL, no closing
        # boundary): aiohttp's reader raises these while the handler streams the rest. That is the
        # client's fault (400), not a defect (500).
        if isinstance(exc, HttpProcessingError) or _raised_in_multipart(exc):
            raise web.HTTPBadRequest(reason="malformed multipart form") from exc
        raise


def form_read(request: web.Request) -> None:
    """An upload handler has read its form: the upload deadline no longer runs."""
    deadline = request.get(UPLOAD_DEADLINE)
    if deadline is not None:
        deadline.reschedule(None)


def _raised_in_multipart(exc: BaseException) -> bool:
    """Whether `exc` was raised inside aiohttp's multipart reader (not by the handler's own code)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__") == "aiohttp.multipart"


MULTIPART = "multipart_reader"  # request key: the rest of a multipart form, after its token
UPLOAD_DEADLINE = "upload_deadline"  # request key: the asyncio.Timeout bounding the form's reading
TAKES_UPLOAD = "takes_upload"


def takes_upload(handler: Handler) -> Handler:
    """Mark a handler whose form is multipart (a file): its token is read from the form's first
    field, and the rest left to it in `request[MULTIPART]`."""
    setattr(handler, TAKES_UPLOAD, True)
    return handler


async def _multipart_token(request: web.Request) -> str | None:
    """A file upload's token: the form's first field, which must be `_csrf` (the page puts it
    first). The rest, the file above all, is left unread for the handler (`request[MULTIPART]`),
    which streams it with bounds of its own instead of `post()` holding it in memory."""
    try:
        reader = await request.multipart()
        part = await reader.next()
    except (ValueError, AssertionError, HttpProcessingError):
        return None
    if not isinstance(part, BodyPartReader) or part.name != "_csrf":
        return None
    token = (await part.read_chunk(256)).decode("ascii", "replace")
    request[MULTIPART] = reader
    return token
