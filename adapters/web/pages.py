"""The pages of the web cabinet and the operators' desk: templates and their filters, Russian
error pages, security headers, `render` and one-time notices, and `mount_site`, which mounts one
signed-in site (its sessions, CSRF check, templates and static files) at its home path."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import get_session

from adapters.web.config import CabinetConfig
from adapters.web.csrf import Handler, csrf_protect, csrf_token
from adapters.web.sessions import WebSessions
from gateway.app_keys import CALENDAR, CLOCK
from gateway.calendar import WorkCalendar
from gateway.host import Host
from gateway.model import Channel, Status
from gateway.resources import package_path
from gateway.validation.explain import MONTHS_RU, ZONE_RU, num

log = logging.getLogger(__name__)

TEMPLATES = package_path("adapters.web", "templates")
STATIC = package_path("adapters.web", "static")


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
    Channel.FILE.value: "файл партнёра",
    Channel.SITE.value: "форма на сайте",
    Channel.PAPER.value: "бумажный бланк",
    Channel.MAIL.value: "электронная почта",
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
    homes = ("/operator/", "/business/")
    ctx.setdefault("home", next((h for h in homes if request.path.startswith(h.rstrip("/"))), "/cabinet/"))
    ctx["csrf"] = csrf_token(session)
    ctx.setdefault("notice", session.pop("notice", None))
    ctx.setdefault("today", _day(request.config_dict[CLOCK](), request.config_dict[CALENDAR]))
    return aiohttp_jinja2.render_template(template, request, ctx, status=status)


async def notify(request: web.Request, text: str) -> None:
    """A one-line notice shown (and announced) on the next page."""
    session = await get_session(request)
    session["notice"] = text


def mount_site(
    host: Host,
    app: web.Application,
    home: str,
    cookie: str,
    routes: web.RouteTableDef | list[web.RouteTableDef],
    probe: str,
) -> None:
    """Mount one signed-in site (the cabinet or the desk) at `home` with its own session cookie."""
    sessions = WebSessions(cookie, home, host.config.section("cabinet", CabinetConfig))
    sub = web.Application(middlewares=[pages_middleware(home), sessions.middleware, csrf_protect])
    setup_templates(sub, host.calendar)
    for table in routes if isinstance(routes, list) else [routes]:
        sub.add_routes(table)
    sub.router.add_static("/static/", STATIC)

    async def start(_app: web.Application) -> None:
        await sessions.start(host.engine, host.clock())

    app.on_startup.append(start)

    async def redirect(_request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(home)

    app.router.add_get(home.rstrip("/"), redirect)
    app.add_subapp(home, sub)
    host.health_probes[probe] = lambda: {"status": "ok" if sessions.ready else "down"}
