"""The residents' web cabinet at `/cabinet/`: sign in, see meters, submit readings, confirm, history.

Server-rendered Russian pages (Jinja2, no JavaScript, no external resources). A resident signs
in with the account number and a one-time code of 6 digits sent by SMS to the phones registered
for it and to its linked Telegram chats; the pages say the same whether or not the account
exists. Optionally (`verification.phone_digits`) the last four digits of a registered phone
instead. Both are the one verification of residents (gateway/verification.py), throttled per
account and client address before the code or digits are compared. A submitted
form becomes a `Submission(channel=CABINET)`; the page then shows the verdict with its
explanation, and a reading that needs confirmation can be confirmed (`gateway.held.confirm`).
The form may carry a photo of the meter, kept with the reading (adapters/web/photo_forms.py).
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web
from aiohttp_session import get_session
from markupsafe import Markup

from adapters.web import pages, photo_forms, sessions, signin
from adapters.web.charts import bar_chart
from adapters.web.config import CabinetConfig
from adapters.web.csrf import takes_upload
from adapters.web.pages import ZONE_LABEL, period_name, render
from gateway import account_views, accounts, held, photos, verification
from gateway.app_keys import CLOCK, CONFIG, ENGINE, INTAKE
from gateway.config import Config
from gateway.host import Host
from gateway.intake import Intake
from gateway.model import Channel, RuleGroup, Submission
from gateway.verification import VERIFIER, shared_verifier

HOME = "/cabinet/"
SCOPE = "account"
SIGN_IN_FAILED = "Неверный номер лицевого счёта или цифры телефона. Проверьте и попробуйте ещё раз."
CODE_FAILED = "Код не подходит: он неверный, устарел или уже использован. Проверьте его или запросите новый."
NO_CHANNEL = (
    "Сейчас мы не можем отправить код входа. Передайте показания по SMS, по телефону "
    "или в офисе обслуживания."
)
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
log = logging.getLogger(__name__)

routes = web.RouteTableDef()


# The cabinet's code: to every sender (SMS to the registered phones, the linked Telegram chats).
PURPOSE = verification.Purpose(
    "cabinet",
    "Код входа в личный кабинет: {code}. Действует {minutes} мин. Никому его не сообщайте, даже сотрудникам.",
)


def _send_code(request: web.Request, account: str) -> None:
    """A code for the account, sent in the background (the answer takes as long whether the
    account exists or not); this address over all accounts asks at most as often as it may sign in."""
    config: Config = request.config_dict[CONFIG]
    address = signin.client_address(request, signin.trusted_networks(config))
    _, wide = signin.rules(config.section("cabinet", CabinetConfig))
    request.config_dict[VERIFIER].send_code_later(
        request.config_dict[ENGINE],
        account,
        PURPOSE,
        verification.Key("code_send", verification.ANY, address),
        wide,
        request.config_dict[CLOCK](),
    )


async def _account(request: web.Request) -> str:
    """The signed-in account number, or a redirect to the sign-in page."""
    session = await sessions.session_subject(request, SCOPE)
    if session is None:
        raise web.HTTPSeeOther(HOME + "login")
    return str(session["account"])


def _digits(text: object, limit: int) -> str:
    return re.sub(r"\D", "", str(text or ""))[:limit]


def _login_context(request: web.Request, error: str | None, account: str) -> dict[str, Any]:
    config: Config = request.config_dict[CONFIG]
    return {"error": error, "account": account, "digits": config.verification.phone_digits}


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    """The sign-in form: the account number (and the phone's digits when that option is on)."""
    if await sessions.session_subject(request, SCOPE) is not None:
        raise web.HTTPSeeOther(HOME)
    return await render(request, "cabinet_login.html", _login_context(request, None, ""))


def _too_many(wait: int) -> str:
    return f"Слишком много неудачных попыток. Попробуйте ещё раз {verification.wait_text(wait)} или позвоните нам."


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    """Step one: the account number; a code goes to its holder and the code page follows.

    With `verification.phone_digits` on and digits typed, those are checked here instead."""
    config: Config = request.config_dict[CONFIG]
    form = await request.post()
    typed = signin.printable(str(form.get("account", "")))[:64]
    account = _digits(typed, 32)
    digits = _digits(form.get("phone_digits", ""), 8)
    if config.verification.phone_digits and digits:
        return await _digits_sign_in(request, typed, account, digits)
    if not request.config_dict[VERIFIER].can_send(PURPOSE):
        return await render(request, "cabinet_login.html", _login_context(request, NO_CHANNEL, typed))
    session = await get_session(request)
    session["pending"] = account
    _send_code(request, account)
    raise web.HTTPSeeOther(HOME + "login/code")


@routes.get("/login/code")
async def code_page(request: web.Request) -> web.Response:
    """Step two: where the code went (the same words for every account) and the field for it."""
    session = await get_session(request)
    if "pending" not in session:
        raise web.HTTPSeeOther(HOME + "login")
    return await render(request, "cabinet_code.html", _code_context(request, None))


def _code_context(request: web.Request, error: str | None) -> dict[str, Any]:
    config: Config = request.config_dict[CONFIG]
    return {
        "error": error,
        "minutes": config.verification.code_minutes,
        "resend": config.verification.code_resend_seconds,
    }


@routes.post("/login/code")
async def enter_code(request: web.Request) -> web.Response:
    """Check the code, after the attempt is counted against this account from this address."""
    config: Config = request.config_dict[CONFIG]
    engine = request.config_dict[ENGINE]
    now = request.config_dict[CLOCK]()
    session = await get_session(request)
    account = session.get("pending")
    if not isinstance(account, str):
        raise web.HTTPSeeOther(HOME + "login")
    form = await request.post()
    code = _digits(form.get("code", ""), 8)
    address = signin.client_address(request, signin.trusted_networks(config))
    subject = account or "-"
    keys = signin.sign_in_keys(config.section("cabinet", CabinetConfig), SCOPE, subject, address)
    outcome = await request.config_dict[VERIFIER].check_code(engine, account, PURPOSE, code, keys, now)
    if not outcome.checked:
        context = _code_context(request, _too_many(outcome.wait))
        return await render(request, "cabinet_code.html", context, status=429)
    await signin.record_sign_in(engine, SCOPE, subject, address, outcome.ok, now)
    if not outcome.ok:
        return await render(request, "cabinet_code.html", _code_context(request, CODE_FAILED), status=401)
    await sessions.open_session(request, SCOPE, account, {"account": account}, address)
    raise web.HTTPSeeOther(HOME)


@routes.post("/login/resend")
async def resend(request: web.Request) -> web.Response:
    """Another code, unless one went out less than `code_resend_seconds` ago (then that one holds)."""
    config: Config = request.config_dict[CONFIG]
    session = await get_session(request)
    account = session.get("pending")
    if not isinstance(account, str):
        raise web.HTTPSeeOther(HOME + "login")
    _send_code(request, account)
    await pages.notify(
        request,
        f"Если с прошлой отправки прошло больше {config.verification.code_resend_seconds} секунд, "
        "мы отправили новый код; прежний больше не действует.",
    )
    raise web.HTTPSeeOther(HOME + "login/code")


async def _digits_sign_in(request: web.Request, typed: str, account: str, digits: str) -> web.Response:
    """The optional old factor: the last four digits of a registered phone."""
    config: Config = request.config_dict[CONFIG]
    engine = request.config_dict[ENGINE]
    now = request.config_dict[CLOCK]()
    address = signin.client_address(request, signin.trusted_networks(config))
    subject = account or typed.strip()[:32] or "-"
    keys = signin.sign_in_keys(config.section("cabinet", CabinetConfig), SCOPE, subject, address)
    outcome = await request.config_dict[VERIFIER].check_digits(engine, account, digits, keys, now)
    if not outcome.checked:
        context = _login_context(request, _too_many(outcome.wait), typed)
        return await render(request, "cabinet_login.html", context, status=429)
    await signin.record_sign_in(engine, SCOPE, subject, address, outcome.ok, now)
    if not outcome.ok:
        return await render(
            request, "cabinet_login.html", _login_context(request, SIGN_IN_FAILED, typed), status=401
        )
    await sessions.open_session(request, SCOPE, account, {"account": account}, address)
    raise web.HTTPSeeOther(HOME)


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    """Sign out: the session is revoked and the cookie cleared."""
    await sessions.close_session(request)
    await pages.notify(request, "Вы вышли из личного кабинета.")
    raise web.HTTPSeeOther(HOME + "login")


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    """Meters with the previous reading, the expected range and the form; readings to confirm."""
    number = await _account(request)
    config = request.config_dict[CONFIG]
    engine = request.config_dict[ENGINE]
    now = request.config_dict[CLOCK]()
    view = await account_views.account_view(
        engine, number, now, RuleGroup.RESIDENTS, config.validation.residents
    )
    if view is None:  # the account left the registry while signed in
        await sessions.close_session(request)
        raise web.HTTPSeeOther(HOME + "login")
    pending = await account_views.readings_to_confirm(engine, number)
    return await render(
        request,
        "cabinet_home.html",
        {
            "view": view,
            "pending": pending,
            "nonce": _new_nonce(),
            "zone_label": ZONE_LABEL,
            "photo_limit": photos.size_text(config.photos),
        },
    )


def _new_nonce() -> str:
    """A one-time id for a rendered form, so that sending it twice stores the reading once."""
    return secrets.token_urlsafe(18)


@routes.post("/meters/{serial:.+}")
@takes_upload  # the form may carry a photo (multipart)
async def submit(request: web.Request) -> web.Response:
    """A reading from the form: into the intake, then the verdict page."""
    number = await _account(request)
    engine = request.config_dict[ENGINE]
    serial = request.match_info["serial"]
    meters = await accounts.meters_of_account(engine, number) or []
    meter = next((m for m in meters if m.serial == serial), None)
    if meter is None:
        raise web.HTTPNotFound()  # not this account's meter: nothing to say about it
    form = await photo_forms.reading_form(request)
    values = {z: form.fields.get(f"v_{z}", "").strip()[:32] for z in meter.zones}
    values = {z: v for z, v in values.items() if v}
    nonce = form.fields.get("nonce", "")
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
    await photo_forms.keep(request, form, verdict.receipt, Channel.CABINET.value)
    raise web.HTTPSeeOther(f"{HOME}receipts/{verdict.receipt}")


@routes.get("/receipts/{receipt:\\d{1,18}}")
async def receipt_page(request: web.Request) -> web.Response:
    """The verdict of one submission with its explanation; the form again when it was refused."""
    number = await _account(request)
    engine = request.config_dict[ENGINE]
    found = await account_views.receipt(engine, int(request.match_info["receipt"]), account=number)
    if found is None:
        raise web.HTTPNotFound()
    meter = None
    if found.status.value == "rejected" and found.meter_serial:
        config = request.config_dict[CONFIG]
        now = request.config_dict[CLOCK]()
        view = await account_views.account_view(
            engine, number, now, RuleGroup.RESIDENTS, config.validation.residents
        )
        meters = view.meters if view else ()
        meter = next((m for m in meters if m.serial == found.meter_serial and m.active), None)
    return await render(
        request,
        "cabinet_receipt.html",
        {
            "r": found,
            "meter": meter,
            "nonce": _new_nonce(),
            "zone_label": ZONE_LABEL,
            "photo_limit": photos.size_text(request.config_dict[CONFIG].photos),
        },
    )


@routes.get("/receipts/{receipt:\\d{1,18}}/photo")
async def photo(request: web.Request) -> web.Response:
    """The meter photo sent with one of the account's own readings."""
    number = await _account(request)
    receipt_id = int(request.match_info["receipt"])
    if await account_views.receipt(request.config_dict[ENGINE], receipt_id, account=number) is None:
        raise web.HTTPNotFound()
    return await photo_forms.photo_response(request, receipt_id)


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
    await pages.notify(
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
    rows = await account_views.last_readings(engine, number, limit=300)
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
    uses = await account_views.monthly_consumption(engine, number, since=now - timedelta(days=400))
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


def install(host: Host, app: web.Application) -> None:
    """Mount `/cabinet/` unless `[cabinet] enabled = false`, with the verification of residents."""
    if not host.config.section("cabinet", CabinetConfig).enabled:
        return
    shared_verifier(host, app)
    pages.mount_site(host, app, HOME, "mg_cabinet", routes, "cabinet")
