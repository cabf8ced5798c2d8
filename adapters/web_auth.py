"""What the web cabinet and the operators' desk share: sessions, CSRF, sign-in limits, passwords, pages.

- Sessions are encrypted cookies (aiohttp-session, Fernet). The key comes from
  `cabinet.session_key` or is generated once and kept in the database (`web_secrets`), so a
  restart signs nobody out. Each signed-in session also has a row in `web_sessions`: signing out
  revokes it, so a copied cookie is worthless afterwards.
- Every POST carries the session's CSRF token (`_csrf`); a form without it is refused with 403.
- Sign-in limits are gateway/verification.py's throttles (reserved before the secret is
  checked); every checked attempt is also written to `signin_attempts`, the security log.
- The client address is the peer, or, when the peer is one of `http.trusted_proxies`, the
  right-most X-Forwarded-For address that is not a trusted proxy.
- Passwords of staff are argon2 hashes (or `scrypt$...` from hashlib), verified in worker
  threads, a few at a time, so that the event loop keeps serving while they run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import warnings
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning
from aiohttp_session import Session, get_session, new_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from gateway.service import Gateway

from adapters.app_keys import CALENDAR, CLOCK, CONFIG, ENGINE
from gateway.calendar import WorkCalendar
from gateway.config import CabinetConfig, Config
from gateway.model import Channel, Status
from gateway.store.schema_cabinet import operators, signin_attempts, web_secrets, web_sessions
from gateway.validation.explain import MONTHS_RU, ZONE_RU, num
from gateway.verification import Key, Rule

log = logging.getLogger(__name__)
# aiohttp-session stores its objects under plain string keys, which aiohttp warns about on every
# request; the keys are the library's own and cannot clash with ours.
warnings.filterwarnings("ignore", category=NotAppKeyWarning, module="aiohttp_session")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
SECRET_NAME = "session_key"

# -- the session key -------------------------------------------------------------------------


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


# -- CSRF ------------------------------------------------------------------------------------


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


# -- sign-in limits --------------------------------------------------------------------------


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# What `cabinet.trust_forwarded_for = true` (deprecated) meant: a proxy on the same host.
_LOCAL_PROXIES = ("127.0.0.1", "::1")


def trusted_networks(config: Config) -> tuple[Network, ...]:
    """`http.trusted_proxies` as networks (the deprecated cabinet key stands for loopback)."""
    items = list(config.http.trusted_proxies)
    if not items and config.cabinet.trust_forwarded_for:
        items = list(_LOCAL_PROXIES)
    return tuple(ipaddress.ip_network(i.strip(), strict=False) for i in items)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(request: web.Request, trusted: tuple[Network, ...]) -> str:
    """Where a request came from: the peer; behind a trusted proxy, the right-most address of
    X-Forwarded-For that is not itself a trusted proxy (the left part is written by the client
    and proves nothing). aiohttp-remotes' XForwardedStrict answers 400 to every peer that is not
    a proxy (devices and Kannel call the gateway directly), so this is done here, per request."""
    peer = request.remote or "unknown"
    hop = _ip(peer)
    if not trusted or hop is None or not any(hop in n for n in trusted):
        return peer[:64]
    chain = ",".join(request.headers.getall("X-Forwarded-For", []))
    for item in reversed(chain.split(",")[-32:]):
        ip = _ip(item)
        if ip is None:  # garbage in the chain: the last trusted hop is what we know
            break
        if not any(ip in n for n in trusted):
            return str(ip)[:64]
        hop = ip
    return str(hop)[:64]


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable(text: str) -> str:
    """`text` without control characters: a NUL cannot be stored in PostgreSQL's text."""
    return _CONTROL.sub("", text)


def rules(config: CabinetConfig) -> tuple[Rule, Rule]:
    """The throttles of a sign-in form: per account (or login) and address, and per address."""
    cap = config.lockout_minutes * 60
    return Rule(config.max_failures_per_account, cap), Rule(config.max_failures_per_address, cap)


def sign_in_keys(config: CabinetConfig, scope: str, subject: str, address: str) -> list[tuple[Key, Rule]]:
    """What one sign-in attempt reserves: the address over all accounts, then this pair."""
    pair, wide = rules(config)
    return [(Key(scope, "*", address), wide), (Key(scope, subject, address), pair)]


async def record_sign_in(
    engine: AsyncEngine, scope: str, subject: str, address: str, ok: bool, now: datetime
) -> None:
    """Keep one sign-in attempt; the limits are counted from these rows."""
    async with engine.begin() as conn:
        await conn.execute(
            insert(signin_attempts).values(at=now, scope=scope, subject=subject[:64], address=address, ok=ok)
        )


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


# -- staff passwords -------------------------------------------------------------------------

_hasher = PasswordHasher()
# Verified against when the login is unknown, so that unknown and known logins take as long.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
# argon2 takes tens of milliseconds and 64 MiB each: two at a time in their own threads. More
# attempts queue here instead of stalling the event loop or exhausting memory. (An executor, not
# an asyncio.Semaphore: it belongs to no event loop, and the module outlives any one loop.)
_HASHING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


async def verify_password_off_loop(stored: str, password: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(_HASHING, verify_password, stored, password)


def hash_password(password: str) -> str:
    """An argon2id hash for `[operators] users` or the operators table."""
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """Check a password against an argon2 hash or `scrypt$n$r$p$salt_b64$hash_b64`."""
    if stored.startswith("scrypt$"):
        try:
            _, n, r, p, salt, digest = stored.split("$")
            expected = base64.b64decode(digest)
            got = hashlib.scrypt(
                password.encode(),
                salt=base64.b64decode(salt),
                n=int(n),
                r=int(r),
                p=int(p),
                dklen=len(expected),
                maxmem=256 * 1024 * 1024,
            )
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(got, expected)
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class Employee:
    login: str
    name: str


async def authenticate_operator(
    engine: AsyncEngine, config: Config, login: str, password: str
) -> Employee | None:
    """The employee with this login and password: configured users first, then the operators table."""
    stored: tuple[str, str] | None = None
    for user in config.operators.users:
        if user.login == login:
            stored = (user.name, user.password_hash)
            break
    if stored is None and login:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(operators.c.name, operators.c.password_hash).where(
                        operators.c.login == login, operators.c.active
                    )
                )
            ).first()
        if row is not None:
            stored = (row.name, row.password_hash)
    if stored is None:
        await verify_password_off_loop(_DUMMY_HASH, password)
        return None
    return Employee(login, stored[0]) if await verify_password_off_loop(stored[1], password) else None


async def add_operator(engine: AsyncEngine, login: str, name: str, password: str, now: datetime) -> bool:
    """Add an employee (or replace the name and password of an existing one); True if added."""
    hashed = hash_password(password)
    async with engine.begin() as conn:
        exists = (await conn.execute(select(operators.c.id).where(operators.c.login == login))).first()
        if exists is not None:
            await conn.execute(
                update(operators)
                .where(operators.c.login == login)
                .values(name=name, password_hash=hashed, active=True)
            )
            return False
        await conn.execute(
            insert(operators).values(
                login=login, name=name, password_hash=hashed, active=True, created_at=now
            )
        )
        return True


# -- pages -----------------------------------------------------------------------------------

STATUS_RU = {
    Status.ACCEPTED.value: "приняты",
    Status.FLAGGED.value: "на проверке",
    Status.NEEDS_CONFIRMATION.value: "ждут подтверждения",
    Status.REJECTED.value: "не приняты",
}
CHANNEL_RU = {
    Channel.SMS.value: "SMS",
    Channel.TELEGRAM.value: "Telegram",
    Channel.CABINET.value: "личный кабинет",
    Channel.IVR.value: "телефон (автоинформатор)",
    Channel.OPERATOR.value: "оператор",
    Channel.DEVICE.value: "прибор (автоматически)",
    Channel.MODBUS.value: "прибор (опрос)",
    Channel.MQTT.value: "прибор (MQTT)",
}
ZONE_LABEL = {"T": "Показания", "T1": "Т1 (день)", "T2": "Т2 (ночь)", "T3": "Т3 (полупик)"}
MONTHS_NOM = [m.capitalize() for m in MONTHS_RU]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

ERROR_TEXT = {
    400: ("Неверный запрос", "Страница получила данные, которые не может обработать."),
    403: (
        "Форма устарела",
        "Страница была открыта слишком давно или отправлена с другого сайта. "
        "Обновите страницу и отправьте форму ещё раз.",
    ),
    404: ("Страница не найдена", "Такой страницы нет, или она относится к другому лицевому счёту."),
    405: ("Неверный запрос", "Эту страницу нельзя открыть так."),
    413: ("Слишком большой запрос", "Отправьте форму без лишних данных."),
}


def pages_middleware(home: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Security headers on every page, and Russian error pages instead of bare status texts."""

    @web.middleware
    async def pages(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                for k, v in SECURITY_HEADERS.items():
                    exc.headers.setdefault(k, v)
                raise
            response = _error_page(request, exc.status, home)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = _error_page(request, 500, home)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if not request.path.startswith(home + "static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return pages


def _error_page(request: web.Request, status: int, home: str) -> web.Response:
    title, text = ERROR_TEXT.get(
        status, ("Ошибка", "Не получилось обработать запрос. Попробуйте ещё раз через несколько минут.")
    )
    return aiohttp_jinja2.render_template(
        "error.html", request, {"title": title, "text": text, "home": home, "code": status}, status=status
    )


def _day(value: datetime | None, calendar: WorkCalendar) -> str:
    if value is None:
        return ""
    return calendar.local_date(value).strftime("%d.%m.%Y")


def _moment(value: datetime | None, calendar: WorkCalendar) -> str:
    if value is None:
        return ""
    return calendar.local_datetime(value).strftime("%d.%m.%Y %H:%M")


def period_name(period: str | None) -> str:
    """'2026-11' -> 'Ноябрь 2026'."""
    if not period or len(period) < 7:
        return ""
    return f"{MONTHS_NOM[int(period[5:7]) - 1]} {period[:4]}"


def setup_templates(app: web.Application, calendar: WorkCalendar) -> None:
    """Jinja2 with autoescaping and the filters the pages use (numbers and dates as residents read them)."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = lambda v: "" if v is None else num(Decimal(v))
    env.filters["day"] = lambda v: _day(v, calendar)
    env.filters["moment"] = lambda v: _moment(v, calendar)
    env.filters["period_name"] = period_name
    env.filters["status_ru"] = lambda s: STATUS_RU.get(str(s), str(s))
    env.filters["channel_ru"] = lambda c: CHANNEL_RU.get(str(c), str(c))
    env.filters["zone_label"] = lambda z: ZONE_LABEL.get(z, z)
    env.filters["zone_short"] = lambda z: ZONE_RU.get(z, z) or "—"


async def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """A page with the session's CSRF token and any one-time notice in its context."""
    session = await get_session(request)
    ctx = dict(context)
    ctx.setdefault("home", "/operator/" if request.path.startswith("/operator") else "/cabinet/")
    ctx["csrf"] = csrf_token(session)
    ctx.setdefault("notice", session.pop("notice", None))
    ctx.setdefault("today", _day(request.config_dict[CLOCK](), request.config_dict[CALENDAR]))
    return aiohttp_jinja2.render_template(template, request, ctx, status=status)


async def notify(request: web.Request, text: str) -> None:
    """A one-line notice shown (and announced) on the next page."""
    session = await get_session(request)
    session["notice"] = text


def web_config(request: web.Request) -> Config:
    config: Config = request.config_dict[CONFIG]
    return config


def mount_site(
    gateway: Gateway, app: web.Application, home: str, cookie: str, routes: web.RouteTableDef, probe: str
) -> None:
    """Mount one signed-in site (the cabinet or the desk) at `home` with its own session cookie."""
    sessions = WebSessions(cookie, home, gateway.config.cabinet)
    sub = web.Application(middlewares=[pages_middleware(home), sessions.middleware, csrf_protect])
    setup_templates(sub, gateway.calendar)
    sub.add_routes(routes)
    sub.router.add_static("/static/", STATIC)

    async def start(_app: web.Application) -> None:
        await sessions.start(gateway.engine, gateway.clock())

    app.on_startup.append(start)

    async def redirect(_request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(home)

    app.router.add_get(home.rstrip("/"), redirect)
    app.add_subapp(home, sub)
    gateway.health_probes[probe] = lambda: {"status": "ok" if sessions.ready else "down"}
