"""The operators' desk at `/operator/`: staff find an account, enter readings, review held ones.

A reading taken in the office or by telephone becomes `Submission(channel=OPERATOR,
employee=<the employee's name>, sender=<login>)`, so the employee is recorded with it. The queue
lists readings awaiting confirmation or flagged for the back office, soonest due first with the
time left; accepting or rejecting one goes through `gateway.held.review`, which audits who,
when, before and after.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, time

import orjson
from aiohttp import web
from aiohttp_session import Session

from adapters.web import desk_files, pages, paper, passwords, photo_forms, sessions, signin
from adapters.web.config import CabinetConfig, OperatorsConfig
from adapters.web.pages import ZONE_LABEL, render
from gateway import account_views, accounts, business, held, held_lifecycle, verification
from gateway.app_keys import CALENDAR, CLOCK, CONFIG, ENGINE, INTAKE
from gateway.host import Host
from gateway.intake import Intake
from gateway.model import Channel, RuleGroup, Submission
from gateway.privacy import mask_phone

HOME = "/operator/"
SCOPE = "operator"
SIGN_IN_FAILED = "Неверный логин или пароль."
HOW = {"office": "в офисе", "phone": "по телефону"}
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

routes = web.RouteTableDef()


async def _employee(request: web.Request) -> Session:
    session = await sessions.session_subject(request, SCOPE)
    if session is None:
        raise web.HTTPSeeOther(HOME + "login")
    return session


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    if await sessions.session_subject(request, SCOPE) is not None:
        raise web.HTTPSeeOther(HOME)
    return await render(request, "operator_login.html", {"error": None, "login": ""})


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    """Staff sign in with login and password; failures are limited like the cabinet's."""
    config = request.config_dict[CONFIG]
    engine = request.config_dict[ENGINE]
    now = request.config_dict[CLOCK]()
    form = await request.post()
    # Control characters (a NUL above all, which PostgreSQL refuses in text) are in no login.
    login_name = signin.printable(str(form.get("login", ""))).strip()[:64]
    password = str(form.get("password", ""))[:256]
    address = signin.client_address(request, signin.trusted_networks(config))
    subject = login_name.lower() or "-"
    # Counted per login and address before the password is checked: a stranger's failures slow
    # down their own address, never the employee at theirs.
    keys = signin.sign_in_keys(config.section("cabinet", CabinetConfig), SCOPE, subject, address)
    wait = await verification.reserve_all(engine, keys, now)
    if wait:
        text = f"Слишком много неудачных попыток. Попробуйте ещё раз {verification.wait_text(wait)}."
        return await render(request, "operator_login.html", {"error": text, "login": login_name}, status=429)
    employee = await passwords.authenticate_operator(engine, config, login_name, password)
    await signin.record_sign_in(engine, SCOPE, subject, address, employee is not None, now)
    if employee is None:
        return await render(
            request, "operator_login.html", {"error": SIGN_IN_FAILED, "login": login_name}, status=401
        )
    await verification.clear(engine, keys[-1][0])
    await sessions.open_session(
        request, SCOPE, employee.login, {"operator": employee.login, "name": employee.name}, address
    )
    raise web.HTTPSeeOther(HOME)


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    await sessions.close_session(request)
    await pages.notify(request, "Вы вышли.")
    raise web.HTTPSeeOther(HOME + "login")


@routes.get("/")
async def search(request: web.Request) -> web.Response:
    """Find an account by number, phone or address; a business customer's by contract, INN or name."""
    session = await _employee(request)
    engine = request.config_dict[ENGINE]
    query = request.query.get("q", "").strip()[:100]
    hits = await account_views.find_accounts(engine, query) if query else []
    return await render(
        request,
        "operator_search.html",
        {
            "me": session["name"],
            "q": query,
            "hits": hits,
            "masked": account_views.masked_phones,
            "customers": await business.customers_of(engine, [a.id for a in hits]),
        },
    )


@routes.get("/accounts/{number:\\d{1,32}}")
async def account_page(request: web.Request) -> web.Response:
    """The account's meters with the entry form, its recent readings and their audit trail."""
    session = await _employee(request)
    config = request.config_dict[CONFIG]
    engine = request.config_dict[ENGINE]
    now = request.config_dict[CLOCK]()
    number = request.match_info["number"]
    view = await account_views.account_view(
        engine, number, now, RuleGroup.OPERATORS, config.validation.operators
    )
    if view is None:
        raise web.HTTPNotFound()
    return await render(
        request,
        "operator_account.html",
        {
            "me": session["name"],
            "view": view,
            "phones": account_views.masked_phones(view),
            "recent": await account_views.last_readings(engine, number, limit=20),
            "trail": await account_views.audit_trail(engine, number, limit=20),
            "customer": await business.customer(engine, number),
            "mask_phone": mask_phone,
            "mask_email": business.mask_email,
            "nonce": secrets.token_urlsafe(18),
            "zone_label": ZONE_LABEL,
            "how": HOW,
        },
    )


def _taken_at(text: str, request: web.Request) -> datetime | None:
    """The day the resident read the meter (a form date), as noon that day in the retailer's zone."""
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        return None
    calendar = request.config_dict[CALENDAR]
    now = request.config_dict[CLOCK]()
    if day == calendar.local_date(now):
        return None  # taken today: the moment of entry
    return datetime.combine(day, time(12), tzinfo=calendar.timezone)


@routes.post("/accounts/{number:\\d{1,32}}/meters/{serial:.+}")
async def enter_reading(request: web.Request) -> web.Response:
    """A reading dictated by phone or brought to the office, entered on the resident's behalf."""
    session = await _employee(request)
    engine = request.config_dict[ENGINE]
    number = request.match_info["number"]
    serial = request.match_info["serial"]
    meters = await accounts.meters_of_account(engine, number) or []
    meter = next((m for m in meters if m.serial == serial), None)
    if meter is None:
        raise web.HTTPNotFound()
    form = await request.post()
    values = {z: str(form.get(f"v_{z}", "")).strip()[:32] for z in meter.zones}
    values = {z: v for z, v in values.items() if v}
    how = str(form.get("how", "office"))
    how = how if how in HOW else "office"
    taken_on = str(form.get("taken_on", ""))[:10]
    nonce = str(form.get("nonce", ""))
    intake: Intake = request.config_dict[INTAKE]
    verdict = await intake.submit(
        Submission(
            channel=Channel.OPERATOR,
            received_at=request.config_dict[CLOCK](),
            sender=str(session["operator"]),
            employee=str(session["name"]),
            account=number,
            meter_serial=serial,
            values=values,
            taken_at=_taken_at(taken_on, request),
            channel_message_id=f"{session['operator']}:{nonce}" if _NONCE.match(nonce) else None,
            raw=orjson.dumps({"meter": serial, "values": values, "how": how, "taken_on": taken_on}).decode(),
        )
    )
    if verdict.receipt is None:
        raise web.HTTPInternalServerError()
    raise web.HTTPSeeOther(f"{HOME}receipts/{verdict.receipt}")


@routes.get("/receipts/{receipt:\\d{1,18}}")
async def receipt_page(request: web.Request) -> web.Response:
    session = await _employee(request)
    engine = request.config_dict[ENGINE]
    found = await account_views.receipt(engine, int(request.match_info["receipt"]))
    if found is None:
        raise web.HTTPNotFound()
    trail = [t for t in await account_views.audit_trail(engine, found.account) if t.receipt == found.receipt]
    return await render(
        request,
        "operator_receipt.html",
        {"me": session["name"], "r": found, "trail": trail, "held": found.status.value in held.HELD},
    )


@routes.get("/receipts/{receipt:\\d{1,18}}/photo")
async def photo(request: web.Request) -> web.Response:
    """The meter photo a resident sent with a reading (`?thumb=1`: its thumbnail)."""
    await _employee(request)
    return await photo_forms.photo_response(request, int(request.match_info["receipt"]))


@routes.get("/queue")
async def queue(request: web.Request) -> web.Response:
    """Readings waiting for the sender's confirmation or flagged for the back office, soonest due
    first, each with the time left to its due time (gateway/held_lifecycle.py)."""
    session = await _employee(request)
    engine = request.config_dict[ENGINE]
    now = request.config_dict[CLOCK]()
    return await render(
        request,
        "operator_queue.html",
        {
            "me": session["name"],
            "items": await held_lifecycle.queue(engine, now),
            "trail": await account_views.audit_trail(engine, limit=20),
        },
    )


@routes.post("/receipts/{receipt:\\d{1,18}}/review")
async def review(request: web.Request) -> web.Response:
    """Accept or reject a held reading with a comment; held.review writes the audit trail."""
    session = await _employee(request)
    engine = request.config_dict[ENGINE]
    receipt_id = int(request.match_info["receipt"])
    form = await request.post()
    decision = str(form.get("decision", ""))
    comment = " ".join(str(form.get("comment", "")).split())[:500]
    back = str(form.get("back", ""))
    back = (
        back if back in (f"{HOME}queue", f"{HOME}receipts/{receipt_id}") else f"{HOME}receipts/{receipt_id}"
    )
    if decision not in ("accept", "reject"):
        raise web.HTTPBadRequest()
    if decision == "reject" and not comment:
        await pages.notify(request, f"Квитанция {receipt_id}: чтобы отклонить, напишите причину.")
        raise web.HTTPSeeOther(back)
    actor = f"{session['operator']} ({session['name']})"
    try:
        verdict = await held.review(
            engine,
            receipt_id,
            held.Decision(decision == "accept", actor, comment),
            request.config_dict[CLOCK](),
        )
    except held.NotHeld:
        await pages.notify(request, f"Квитанция {receipt_id} уже рассмотрена или не найдена.")
        raise web.HTTPSeeOther(back) from None
    await pages.notify(request, f"Квитанция {receipt_id}: {'принята' if verdict.accepted else 'отклонена'}.")
    raise web.HTTPSeeOther(back)


def install(host: Host, app: web.Application) -> None:
    """Mount `/operator/` unless `[operators] enabled = false`."""
    if host.config.section("operators", OperatorsConfig).enabled:
        desk_files.install(host, app)
        pages.mount_site(
            host, app, HOME, "mg_operator", [routes, paper.routes, desk_files.routes], "operator_desk"
        )
