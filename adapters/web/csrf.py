"""CSRF protection of the web forms: every POST carries the session's token (`_csrf`), and a
form without it, or sent from another site, is refused with 403."""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp_session import Session, get_session

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
    try:
        form = await request.post()
    except ValueError:
        form = None
    sent = form.get("_csrf") if form is not None else None
    if not isinstance(expected, str) or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise web.HTTPForbidden(reason="csrf")
    return await handler(request)
