"""Cookie sessions of the web cabinet and the operators' desk, and the key that seals them.

Sessions are encrypted cookies (aiohttp-session, Fernet). The key comes from
`cabinet.session_key` or is generated once and kept in the database (`web_secrets`), so a
restart signs nobody out. Each signed-in session also has a row in `web_sessions`: signing out
revokes it, so a copied cookie is worthless afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import warnings
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning
from aiohttp_session import Session, get_session, new_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.web.config import CabinetConfig
from adapters.web.csrf import Handler, csrf_token
from adapters.web.tables import web_sessions
from gateway.app_keys import CLOCK, ENGINE
from gateway.store.schema_verification import web_secrets

# aiohttp-session stores its objects under plain string keys, which aiohttp warns about on every
# request; the keys are the library's own and cannot clash with ours.
warnings.filterwarnings("ignore", category=NotAppKeyWarning, module="aiohttp_session")

SECRET_NAME = "session_key"


def key_from_config(secret: str) -> bytes:
    """A configured secret as a Fernet key: used as is if it is one, else derived with SHA-256."""
    try:
        Fernet(secret.encode())
        return secret.encode()
    except ValueError:
        return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


async def session_key(engine: AsyncEngine, config: CabinetConfig, now: datetime) -> bytes:
    """The key of the session cookies: from configuration, or generated once and kept in the database."""
    if config.session_key:
        return key_from_config(config.session_key)
    query = select(web_secrets.c.value).where(web_secrets.c.name == SECRET_NAME)
    async with engine.connect() as conn:
        found = (await conn.execute(query)).scalar_one_or_none()
    if found is not None:
        return str(found).encode()
    key = Fernet.generate_key()
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(web_secrets).values(name=SECRET_NAME, value=key.decode(), created_at=now)
            )
        return key
    except IntegrityError:  # another gateway process made it first: use theirs
        async with engine.connect() as conn:
            return str((await conn.execute(query)).scalar_one()).encode()


class WebSessions:
    """Encrypted cookie sessions of one web surface; the key is loaded when the gateway starts."""

    def __init__(self, cookie_name: str, path: str, config: CabinetConfig) -> None:
        self.cookie_name = cookie_name
        self.path = path
        self.config = config
        self._middleware: Any = None

    async def start(self, engine: AsyncEngine, now: datetime) -> None:
        key = await session_key(engine, self.config, now)
        storage = EncryptedCookieStorage(
            Fernet(key),
            cookie_name=self.cookie_name,
            path=self.path,
            max_age=self.config.session_idle_minutes * 60,  # the Fernet token's age is checked too
            secure=self.config.cookie_secure,
            httponly=True,
            samesite="Lax",
        )
        self._middleware = session_middleware(storage)

    @property
    def ready(self) -> bool:
        return self._middleware is not None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._middleware is None:
            raise web.HTTPServiceUnavailable(text="starting")
        response: web.StreamResponse = await self._middleware(request, handler)
        return response


async def open_session(
    request: web.Request, scope: str, subject: str, data: Mapping[str, Any], address: str
) -> Session:
    """Start a fresh session (new CSRF token, new id) for a signed-in resident or employee."""
    engine: AsyncEngine = request.config_dict[ENGINE]
    sid = secrets.token_urlsafe(32)
    async with engine.begin() as conn:
        await conn.execute(
            insert(web_sessions).values(
                id=sid,
                scope=scope,
                subject=subject[:64],
                address=address,
                created_at=request.config_dict[CLOCK](),
            )
        )
    session = await new_session(request)
    session["sid"] = sid
    session["scope"] = scope
    for k, v in data.items():
        session[k] = v
    csrf_token(session)
    return session


async def session_subject(request: web.Request, scope: str) -> Session | None:
    """The signed-in session of this scope, or None (not signed in, signed out, or another scope)."""
    session = await get_session(request)
    sid = session.get("sid")
    if session.get("scope") != scope or not isinstance(sid, str):
        return None
    engine: AsyncEngine = request.config_dict[ENGINE]
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(web_sessions.c.revoked_at, web_sessions.c.scope).where(web_sessions.c.id == sid)
            )
        ).first()
    if row is None or row.revoked_at is not None or row.scope != scope:
        session.invalidate()
        return None
    session.changed()  # re-issue the cookie: the idle timeout counts from the last request
    return session


async def close_session(request: web.Request) -> None:
    """Sign out: revoke the session's row and clear the cookie."""
    session = await get_session(request)
    sid = session.get("sid")
    if isinstance(sid, str):
        engine: AsyncEngine = request.config_dict[ENGINE]
        async with engine.begin() as conn:
            await conn.execute(
                update(web_sessions)
                .where(web_sessions.c.id == sid, web_sessions.c.revoked_at.is_(None))
                .values(revoked_at=request.config_dict[CLOCK]())
            )
    session.invalidate()
