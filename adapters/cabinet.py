"""The residents' web cabinet at `/cabinet/`: sign in, see meters, submit readings, confirm, history.

Server-rendered Russian pages (Jinja2, no JavaScript, no external resources). A resident signs
in with the account number and the last four digits of a phone registered for it. A submitted
form becomes a `Submission(channel=CABINET)`; the page then shows the verdict with its
explanation, and a reading that needs confirmation can be confirmed (`gateway.held.confirm`).
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from markupsafe import Markup

from adapters import web_auth
from adapters.app_keys import CLOCK, CONFIG, ENGINE, INTAKE
from adapters.svg_chart import bar_chart
from adapters.web_auth import ZONE_LABEL, period_name, render
from gateway import accounts, held
from gateway.intake import Intake
from gateway.model import Channel, RuleGroup, Submission

if TYPE_CHECKING:
    from gateway.service import Gateway

HOME = "/cabinet/"
SCOPE = "account"
SIGN_IN_FAILED = "Неверный номер лицевого счёта или цифры телефона. Проверьте и попробуйте ещё раз."
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

routes = web.RouteTableDef()


async def _account(request: web.Request) -> str:
    """The signed-in account number, or a redirect to the sign-in page."""
    session = await web_auth.session_subject(request, SCOPE)
    if session is None:
        raise web.HTTPSeeOther(HOME + "login")
    return str(session["account"])


def _digits(text: object, limit: int) -> str:
    return re.sub(r"\D", "", str(text or ""))[:limit]


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    """The sign-in form."""
    if await web_auth.session_subject(request, SCOPE) is not None:
        raise web.HTTPSeeOther(HOME)
    return await render(request, "cabinet_login.html", {"error": None, "account": ""})


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    """Check the account and the phone's last four digits; the same answer for every failure."""
    config = request.config_dict[CONFIG]
    engine = request.config_dict[ENGINE]
    now = request.config_dict[CLOCK]()
    form = await request.post()
    typed = str(form.get("account", ""))[:64]
    account = _digits(typed, 32)
    digits = _digits(form.get("phone_digits", ""), 8)
    address = web_auth.client_address(request, config.cabinet)
    subject = account or typed.strip()[:32] or "-"
    if await web_auth.sign_in_locked(engine, config.cabinet, SCOPE, subject, address, now):
        minutes = config.cabinet.lockout_minutes
        text = f"Слишком много неудачных попыток входа. Попробуйте через {minutes} минут или позвоните нам."
        return await render(request, "cabinet_login.html", {"error": text, "account": typed}, status=429)
    phones = await accounts.phones_of_account(engine, account) if account else []
    # Compare against every registered phone (and a dummy when there is none) in constant time.
    ok = False
    for phone in phones or ["+00000000000"]:
        ok |= hmac.compare_digest(phone[-4:].encode(), digits.encode()) and bool(phones) and len(digits) == 4
    await web_auth.record_sign_in(engine, SCOPE, subject, address, ok, now)
    if not ok:
        return await render(
            request, "cabinet_login.html", {"error": SIGN_IN_FAILED, "account": typed}, status=401
        )
    await web_auth.open_session(request, SCOPE, account, {"account": account}, address)
    raise web.HTTPSeeOther(HOME)


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    """Sign out: the session is revoked and the cookie cleared."""
    await web_auth.close_session(request)
    await web_auth.notify(request, "Вы вышли из личного кабинета.")
    raise web.HTTPSeeOther(HOME + "login")


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    """Meters with the previous reading, the expected range and the form; readings to confirm."""
    number = await _account(request)
    config = request.config_dict[CONFIG]
    engine = request.config_dict[ENGINE]
    now = request.config_dict[CLOCK]()
    view = await accounts.account_view(engine, number, now, RuleGroup.RESIDENTS, config.validation.residents)
    if view is None:  # the account left the registry while signed in
        await web_auth.close_session(request)
        raise web.HTTPSeeOther(HOME + "login")
    pending = await accounts.pending_confirmation(engine, number)
    return await render(
        request,
        "cabinet_home.html",
        {"view": view, "pending": pending, "nonce": _new_nonce(), "zone_label": ZONE_LABEL},
    )


def _new_nonce() -> str:
    """A one-time id for a rendered form, so that sending it twice stores the reading once."""
    return secrets.token_urlsafe(18)


@routes.post("/meters/{serial:.+}")
async def submit(request: web.Request) -> web.Response:
    """A reading from the form: into the intake, then the verdict page."""
    number = await _account(request)
    engine = request.config_dict[ENGINE]
    serial = request.match_info["serial"]
    meters = await accounts.meters_of_account(engine, number) or []
    meter = next((m for m in meters if m.serial == serial), None)
    if meter is None:
        raise web.HTTPNotFound()  # not this account's meter: nothing to say about it
    form = await request.post()
    values = {z: str(form.get(f"v_{z}", "")).strip()[:32] for z in meter.zones}
    values = {z: v for z, v in values.items() if v}
    nonce = str(form.get("nonce", ""))
    intake: Intake = request.config_dict[INTAKE]
    verdict = await intake.submit(
        Submission(
            channel=Channel.CABINET,
            received_at=request.config_dict[CLOCK](),
            sender=number,
            account=number,
            meter_serial=serial,
            values=values,
            # The form's one-time id: pressing "send" twice (or reloading) stores the reading once.
            channel_message_id=f"{number}:{nonce}" if _NONCE.match(nonce) else None,
            raw=orjson.dumps({"meter": serial, "values": values}).decode(),
        )
    )
    if verdict.receipt is None:
        raise web.HTTPInternalServerError()
    raise web.HTTPSeeOther(f"{HOME}receipts/{verdict.receipt}")


@routes.get("/receipts/{receipt:\\d{1,18}}")
async def receipt_page(request: web.Request) -> web.Response:
    """The verdict of one submission with its explanation; the form again when it was refused."""
    number = await _account(request)
    engine = request.config_dict[ENGINE]
    found = await accounts.receipt(engine, int(request.match_info["receipt"]), account=number)
    if found is None:
        raise web.HTTPNotFound()
    meter = None
    if found.status.value == "rejected" and found.meter_serial:
        config = request.config_dict[CONFIG]
        now = request.config_dict[CLOCK]()
        view = await accounts.account_view(
            engine, number, now, RuleGroup.RESIDENTS, config.validation.residents
        )
        meters = view.meters if view else ()
        meter = next((m for m in meters if m.serial == found.meter_serial and m.active), None)
    return await render(
        request,
        "cabinet_receipt.html",
        {"r": found, "meter": meter, "nonce": _new_nonce(), "zone_label": ZONE_LABEL},
    )


@routes.post("/receipts/{receipt:\\d{1,18}}/confirm")
async def confirm(request: web.Request) -> web.Response:
    """The resident vouches for a value that needed confirmation."""
    number = await _account(request)
    config = request.config_dict[CONFIG]
    engine = request.config_dict[ENGINE]
    receipt_id = int(request.match_info["receipt"])
    try:
        verdict = await held.confirm(
            engine, config, receipt_id, f"cabinet:{number}", request.config_dict[CLOCK](), account=number
        )
    except held.NotHeld:
        raise web.HTTPNotFound() from None
    await web_auth.notify(
        request,
        "Показания подтверждены и приняты."
        if verdict.accepted
        else "Показания подтверждены, но не приняты: " + "; ".join(r.message_ru for r in verdict.reasons),
    )
    raise web.HTTPSeeOther(f"{HOME}receipts/{receipt_id}")


@routes.get("/history")
async def history(request: web.Request) -> web.Response:
    """Readings by month with channel, verdict and billing state; a chart of monthly consumption."""
    number = await _account(request)
    engine = request.config_dict[ENGINE]
    now = request.config_dict[CLOCK]()
    rows = await accounts.last_readings(engine, number, limit=300)
    months: dict[str, list[Any]] = {}
    for r in rows:
        months.setdefault(r.period or "", []).append(r)
    return await render(
        request,
        "cabinet_history.html",
        {"months": months, "charts": await consumption_charts(engine, number, now), "zone_label": ZONE_LABEL},
    )


async def consumption_charts(engine: Any, number: str, now: Any) -> list[dict[str, Any]]:
    """One chart (and its table) per meter, for the last twelve periods with consumption."""
    uses = await accounts.monthly_consumption(engine, number, since=now - timedelta(days=400))
    charts: list[dict[str, Any]] = []
    for serial in sorted({u.serial for u in uses}):
        mine = [u for u in uses if u.serial == serial]
        periods = sorted({u.period for u in mine})[-12:]
        zones = sorted({u.zone for u in mine})
        table = {(u.period, u.zone): u.kwh for u in mine}
        series: dict[str, list[Decimal | None]] = {
            (ZONE_LABEL[z] if z != "T" else "Расход"): [table.get((p, z)) for p in periods] for z in zones
        }
        svg = bar_chart(
            periods,
            series,
            f"Расход по месяцам, счётчик {serial}",
            label=lambda p: period_name(p).split()[0][:3] + " " + p[2:4],
            chart_id=f"chart-{len(charts)}",
        )
        charts.append(
            # Markup: bar_chart escapes every text it puts in.
            {"serial": serial, "svg": Markup(svg), "periods": periods, "zones": zones, "table": table}
        )
    return charts


def install(gateway: Gateway, app: web.Application) -> None:
    """Mount `/cabinet/` unless `[cabinet] enabled = false`."""
    if gateway.config.cabinet.enabled:
        web_auth.mount_site(gateway, app, HOME, "mg_cabinet", routes, "cabinet")
