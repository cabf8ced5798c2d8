"""The form on the retailer's site at `/form/`: an account and its reading(s), without signing in.

Whoever fills it in is never verified for the account, so the core treats it as an unverified
sender of its own kind (`Channel.SITE`, gateway/senders.py): its readings follow `[senders]
site_form` (held for the back office, or accepted), are never asked back, and are counted per
client address and per account (`site_per_address_per_hour`, `site_per_account_per_hour`).
The answer page is the same whatever became of the reading (accepted, held, refused as lower,
an account that does not exist): it echoes what was typed and a receipt, and tells nothing of
the account or its history. Only what depends on the typed words alone is said (an account
that is not digits, a value that is not a number), and the limit when it is reached.

The page has a CSRF token in an anonymous session (cookie `mg_form`) and a one-time nonce, so a
form sent twice stores one reading.
"""

from __future__ import annotations

import re
import secrets

import orjson
from aiohttp import web

from adapters.web import pages, signin
from adapters.web.config import SiteFormConfig
from adapters.web.pages import render
from gateway import senders
from gateway.app_keys import CLOCK, CONFIG, ENGINE, INTAKE
from gateway.config import Config
from gateway.host import Host
from gateway.intake import Intake
from gateway.model import Channel, Status, Submission
from gateway.validation.evaluate import parse_value

HOME = "/form/"
FIELDS = (
    ("v1", "Показания (или день, Т1)"),
    ("v2", "Ночь (Т2), если счётчик двухтарифный"),
    ("v3", "Полупик (Т3), если есть"),
)
_ACCOUNT = re.compile(r"^\d{5,12}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
LIMITED = "Слишком много показаний за час с этого адреса или для этого лицевого счёта. Повторите позже."

routes = web.RouteTableDef()


def _context(request: web.Request, **extra: object) -> dict[str, object]:
    config: Config = request.config_dict[CONFIG]
    ctx: dict[str, object] = {
        "home": HOME,
        "fields": FIELDS,
        "nonce": secrets.token_urlsafe(18),
        "errors": {},
        "given": {},
        "help_line": config.section("site_form", SiteFormConfig).help_line,
    }
    ctx.update(extra)
    return ctx


@routes.get("/")
async def form(request: web.Request) -> web.Response:
    return await render(request, "site_form.html", _context(request))


def _read(form: dict[str, str]) -> tuple[str, list[str], dict[str, str]]:
    """The account and the values as typed, and what is wrong with the words themselves."""
    account = "".join(form.get("account", "").split())[:40]
    values = [" ".join(form.get(name, "").split())[:20] for name, _ in FIELDS]
    errors: dict[str, str] = {}
    if not _ACCOUNT.match(account):
        errors["account"] = "Номер лицевого счёта — от 5 до 12 цифр, как в квитанции."
    given = [v for v in values if v]
    if not given:
        errors["v1"] = "Введите показания счётчика."
    for (name, _), value in zip(FIELDS, values, strict=True):
        if value and parse_value(value) is None:
            errors[name] = "Показания — число, например 12345 или 12345,6."
    if values[2] and not values[1] or (values[1] or values[2]) and not values[0]:
        errors.setdefault("v1", "Заполните поля по порядку: день, ночь, полупик.")
    return account, values, errors


@routes.post("/")
async def send(request: web.Request) -> web.Response:
    """Take the form's reading; the answer says nothing of the account (see the module's opening)."""
    config: Config = request.config_dict[CONFIG]
    posted = await request.post()
    typed = {k: str(posted.get(k, ""))[:100] for k in ("account", "v1", "v2", "v3", "nonce")}
    account, values, errors = _read(typed)
    given = {"account": account, **{name: v for (name, _), v in zip(FIELDS, values, strict=True)}}
    if errors:
        return await render(
            request, "site_form.html", _context(request, errors=errors, given=given), status=422
        )
    address = signin.client_address(request, signin.trusted_networks(config))
    now = request.config_dict[CLOCK]()
    if await senders.site_form_full(request.config_dict[ENGINE], address, account, now, config.senders):
        return await render(
            request, "site_form.html", _context(request, limited=LIMITED, given=given), status=429
        )
    nonce = typed["nonce"]
    intake: Intake = request.config_dict[INTAKE]
    filled = tuple(v for v in values if v)
    verdict = await intake.submit(
        Submission(
            channel=Channel.SITE,
            received_at=now,
            sender=address,
            account=account,
            positional_values=filled,
            channel_message_id=f"form:{nonce}" if _NONCE.match(nonce) else None,
            raw=orjson.dumps({"account": account, "values": list(filled)}).decode(),
        )
    )
    if verdict.status is Status.REJECTED and any(r.code == "sender_rate_limited" for r in verdict.reasons):
        return await render(
            request, "site_form.html", _context(request, limited=LIMITED, given=given), status=429
        )
    return await render(
        request,
        "site_form_sent.html",
        _context(request, receipt=verdict.receipt, account=account, values=filled),
    )


def install(host: Host, app: web.Application) -> None:
    """Mount `/form/` when `[site_form] enabled`."""
    if host.config.section("site_form", SiteFormConfig).enabled:
        pages.mount_site(host, app, HOME, "mg_form", routes, "site_form")
