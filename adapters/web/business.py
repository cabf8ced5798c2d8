"""The business customers' cabinet at `/business/`: a legal entity's or entrepreneur's monthly
report, every metering point of the contract on one page, or as a file.

Signing in: the contract number and the phone of one of the contract's contact persons; a
one-time code goes to that phone alone (gateway/verification.py `send_code_to_contact`: SMS, or
the demo's log), and the pages say the same whether or not the contract and the phone are
known. Attempts are throttled per contract and client address like the residents' cabinet. An
account number alone opens nothing (gateway/business.py).

Signed in, the page lists each metering point of the contract (its name, meter, zones, the
previous reading and the range expected) with a field per zone; the report sends each point
filled in as its own `Submission(channel=CABINET)` of the contract's account, from
`<account>:contact-<id>`, so the contact is recorded with it. A file in the documented layout
(gateway/business_report.py) does the same for each meter and day it holds. Either way the
answer lists every point's verdict; sending the same form or file again stores nothing twice
(its one-time id, or the file's hash, is in each reading's message id).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import Counter
from datetime import date, datetime, time
from typing import Any

import orjson
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp_session import Session, get_session

from adapters.web import pages, sessions, signin
from adapters.web.config import CabinetConfig
from adapters.web.csrf import MULTIPART, form_read, takes_upload
from adapters.web.pages import ZONE_LABEL, render
from gateway import account_views, business, business_report, held, verification
from gateway.account_views import AccountView
from gateway.app_keys import BRANCHES, CLOCK, CONFIG, ENGINE, INTAKE
from gateway.config import Config
from gateway.host import Host
from gateway.model import Channel, RuleGroup, Submission, Verdict
from gateway.verification import VERIFIER, shared_verifier

HOME = "/business/"
SCOPE = "business"
CODE_FAILED = "Код не подходит: он неверный, устарел или уже использован. Проверьте его или запросите новый."
NO_CHANNEL = "Сейчас мы не можем отправить код входа. Передайте показания через вашего менеджера."
PURPOSE = verification.Purpose(
    "business",
    "Код входа в кабинет по договору: {code}. Действует {minutes} мин. Никому его не сообщайте.",
)
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,32}$")

routes = web.RouteTableDef()


# -- signing in ----------------------------------------------------------------------------


def _address(request: web.Request) -> str:
    return signin.client_address(request, signin.trusted_networks(request.config_dict[CONFIG]))


def _typed(form: Any) -> tuple[str, str]:
    """The contract number and the phone as typed, bounded."""
    contract = signin.printable(str(form.get("contract", ""))).strip()[:40]
    phone = signin.printable(str(form.get("phone", ""))).strip()[:24]
    return contract, phone


def _send_code(request: web.Request, contract: str, phone: str) -> None:
    """A code to the phone if it is a contact's of the contract, sent in the background (the
    answer takes as long either way); this address asks at most as often as it may sign in."""
    config: Config = request.config_dict[CONFIG]
    _, wide = signin.rules(config.section("cabinet", CabinetConfig))
    request.config_dict[VERIFIER].send_code_to_contact_later(
        request.config_dict[ENGINE],
        contract,
        phone,
        PURPOSE,
        verification.Key("code_send", verification.ANY, _address(request)),
        wide,
        request.config_dict[CLOCK](),
    )


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    """The sign-in form: the contract number and a contact person's phone."""
    if await sessions.session_subject(request, SCOPE) is not None:
        raise web.HTTPSeeOther(HOME)
    return await render(request, "business_login.html", {"error": None, "contract": "", "phone": ""})


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    """Step one: a code goes to the phone if it is a contact of the contract; the code page follows."""
    contract, phone = _typed(await request.post())
    if not request.config_dict[VERIFIER].can_send_to_phone(PURPOSE):
        context = {"error": NO_CHANNEL, "contract": contract, "phone": phone}
        return await render(request, "business_login.html", context)
    session = await get_session(request)
    session["pending_business"] = [contract, phone]
    _send_code(request, contract, phone)
    raise web.HTTPSeeOther(HOME + "login/code")


def _pending(session: Session) -> tuple[str, str]:
    pending = session.get("pending_business")
    if not (isinstance(pending, list) and len(pending) == 2 and all(isinstance(x, str) for x in pending)):
        raise web.HTTPSeeOther(HOME + "login")
    return pending[0], pending[1]


def _code_context(request: web.Request, error: str | None) -> dict[str, Any]:
    config: Config = request.config_dict[CONFIG]
    return {
        "error": error,
        "minutes": config.verification.code_minutes,
        "resend": config.verification.code_resend_seconds,
    }


@routes.get("/login/code")
async def code_page(request: web.Request) -> web.Response:
    _pending(await get_session(request))
    return await render(request, "business_code.html", _code_context(request, None))


@routes.post("/login/code")
async def enter_code(request: web.Request) -> web.Response:
    """Check the code, after the attempt is counted against this contract from this address."""
    config: Config = request.config_dict[CONFIG]
    engine = request.config_dict[ENGINE]
    now = request.config_dict[CLOCK]()
    contract, phone = _pending(await get_session(request))
    code = re.sub(r"\D", "", str((await request.post()).get("code", "")))[:8]
    address = _address(request)
    subject = business.contract_key(contract) or "-"
    keys = signin.sign_in_keys(config.section("cabinet", CabinetConfig), SCOPE, subject, address)
    verifier = request.config_dict[VERIFIER]
    outcome, found = await verifier.check_contact_code(engine, contract, phone, PURPOSE, code, keys, now)
    if not outcome.checked:
        text = f"Слишком много неудачных попыток. Попробуйте ещё раз {verification.wait_text(outcome.wait)}."
        return await render(request, "business_code.html", _code_context(request, text), status=429)
    await signin.record_sign_in(engine, SCOPE, subject, address, outcome.ok, now)
    if not outcome.ok or found is None:
        return await render(request, "business_code.html", _code_context(request, CODE_FAILED), status=401)
    customer, contact = found
    data = {"account": customer.number, "contact": contact.id, "contact_name": contact.name}
    await sessions.open_session(request, SCOPE, subject, data, address)
    raise web.HTTPSeeOther(HOME)


@routes.post("/login/resend")
async def resend(request: web.Request) -> web.Response:
    """Another code, unless one went out less than `code_resend_seconds` ago (then that one holds)."""
    config: Config = request.config_dict[CONFIG]
    contract, phone = _pending(await get_session(request))
    _send_code(request, contract, phone)
    await pages.notify(
        request,
        f"Если с прошлой отправки прошло больше {config.verification.code_resend_seconds} секунд, "
        "мы отправили новый код; прежний больше не действует.",
    )
    raise web.HTTPSeeOther(HOME + "login/code")


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    await sessions.close_session(request)
    await pages.notify(request, "Вы вышли из кабинета.")
    raise web.HTTPSeeOther(HOME + "login")


# -- the contract's points and the report ------------------------------------------------------


async def _signed_in(request: web.Request) -> tuple[Session, business.Customer, AccountView]:
    """The session, the contract's customer and its account with each point's expected range."""
    session = await sessions.session_subject(request, SCOPE)
    if session is None:
        raise web.HTTPSeeOther(HOME + "login")
    config: Config = request.config_dict[CONFIG]
    engine = request.config_dict[ENGINE]
    number = str(session["account"])
    customer = await business.customer(engine, number)
    now = request.config_dict[CLOCK]()
    view = await account_views.account_view(
        engine, number, now, RuleGroup.RESIDENTS, config.validation.residents
    )
    contact = customer and next((c for c in customer.contacts if c.id == session["contact"]), None)
    if customer is None or view is None or contact is None:  # the contract or the contact left the registry
        await sessions.close_session(request)
        raise web.HTTPSeeOther(HOME + "login")
    return session, customer, view


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    """Every metering point of the contract with its fields, the file form and readings to confirm."""
    session, customer, view = await _signed_in(request)
    pending = await account_views.readings_to_confirm(request.config_dict[ENGINE], customer.number)
    return await render(request, "business_home.html", _home_context(session, customer, view, pending))


def _home_context(
    session: Session, customer: business.Customer, view: AccountView, pending: Any
) -> dict[str, Any]:
    return {
        "customer": customer,
        "view": view,
        "contact_name": session["contact_name"],
        "pending": pending,
        "nonce": secrets.token_urlsafe(18),
        "zone_label": ZONE_LABEL,
        "max_kb": business_report.MAX_BYTES // 1000,
    }


def _taken_at(request: web.Request, customer: business.Customer, day: date | None) -> datetime | None:
    """The day the meters were read, as noon that day in the account's branch's zone; today: now."""
    if day is None:
        return None
    branch = request.config_dict[BRANCHES].of(customer.branch)
    if day == branch.calendar.local_date(request.config_dict[CLOCK]()):
        return None
    return datetime.combine(day, time(12), tzinfo=branch.calendar.timezone)


def _sender(session: Session) -> str:
    return f"{session['account']}:contact-{session['contact']}"


@routes.post("/report")
async def report(request: web.Request) -> web.Response:
    """The report from the page: each point with a value becomes a submission; the verdicts follow."""
    session, customer, view = await _signed_in(request)
    form = await request.post()
    nonce = str(form.get("nonce", ""))
    if not _NONCE.match(nonce):
        raise web.HTTPBadRequest()
    try:
        day = date.fromisoformat(str(form.get("taken_on", "")).strip()) if form.get("taken_on") else None
    except ValueError:
        day = None
    taken_at = _taken_at(request, customer, day)
    subs: list[Submission] = []
    points: list[tuple[str | None, str, dict[str, str], list[int]]] = []
    for m in view.meters:
        if not m.active:
            continue
        values = {z: str(form.get(f"v:{m.serial}:{z}", "")).strip()[:32] for z in m.zones}
        values = {z: v for z, v in values.items() if v}
        if not values:
            continue  # a point left empty is not part of this report
        points.append((m.point, m.serial, values, []))
        subs.append(
            Submission(
                channel=Channel.CABINET,
                received_at=request.config_dict[CLOCK](),
                sender=_sender(session),
                account=customer.number,
                meter_serial=m.serial,
                values=values,
                taken_at=taken_at,
                channel_message_id=f"{customer.number}:{nonce}:{m.serial}",
                raw=orjson.dumps({"meter": m.serial, "values": values, "date": str(day or "")}).decode(),
            )
        )
    if not subs:
        await pages.notify(request, "Введите показания хотя бы одной точки учёта.")
        raise web.HTTPSeeOther(HOME)
    verdicts = await request.config_dict[INTAKE].submit_many(subs)
    return await _results(request, customer, points, verdicts, refused=[], title="Показания переданы")


@routes.post("/upload")
@takes_upload
async def upload(request: web.Request) -> web.Response:
    """The report as a file (gateway/business_report.py): one submission per meter and day."""
    session, customer, view = await _signed_in(request)
    reader: MultipartReader | None = request.get(MULTIPART)
    if reader is None:
        raise web.HTTPBadRequest()
    name, data = "", b""
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise web.HTTPBadRequest()
        if part.name == "file":
            name = (part.filename or "file")[:100]
            data = await _read_bounded(part, business_report.MAX_BYTES + 1)
            break
    form_read(request)
    points = [business_report.Point(m.serial, m.point, m.zones) for m in view.meters if m.active]
    try:
        found = business_report.read_report(data, points)
    except business_report.ReportError as exc:
        pending = await account_views.readings_to_confirm(request.config_dict[ENGINE], customer.number)
        context = _home_context(session, customer, view, pending) | {"file_error": str(exc)}
        return await render(request, "business_home.html", context, status=422)
    digest = hashlib.sha256(data).hexdigest()[:24]
    point_of = {m.serial: m.point for m in view.meters}
    subs: list[Submission] = []
    rows: list[tuple[str | None, str, dict[str, str], list[int]]] = []
    for r in found.readings:
        rows.append((point_of.get(r.serial), r.serial, r.values, r.lines))
        subs.append(
            Submission(
                channel=Channel.CABINET,
                received_at=request.config_dict[CLOCK](),
                sender=_sender(session),
                account=customer.number,
                meter_serial=r.serial,
                values=r.values,
                taken_at=_taken_at(request, customer, r.day),
                # The file's content, not its name: the same file sent again stores nothing twice.
                channel_message_id=f"{customer.number}:file-{digest}:{r.serial}:{r.day or ''}",
                raw=orjson.dumps(
                    {
                        "file": name,
                        "lines": r.lines,
                        "meter": r.serial,
                        "values": r.values,
                        "date": str(r.day or ""),
                    }
                ).decode(),
            )
        )
    verdicts = await request.config_dict[INTAKE].submit_many(subs) if subs else []
    return await _results(request, customer, rows, verdicts, found.refused, title=f"Файл {name} обработан")


async def _read_bounded(part: BodyPartReader, limit: int) -> bytes:
    """The file part, at most `limit` bytes (more is cut there: the report refuses it by size)."""
    chunks, size = [], 0
    while size < limit and (chunk := await part.read_chunk(1 << 16)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit]


async def _results(
    request: web.Request,
    customer: business.Customer,
    points: list[tuple[str | None, str, dict[str, str], list[int]]],
    verdicts: list[Verdict],
    refused: list[tuple[int, str]],
    title: str,
) -> web.Response:
    """Each point's verdict (and a file's refused lines), on one page."""
    rows = [
        {"point": point, "serial": serial, "shown": values, "lines": lines, "v": verdict}
        for (point, serial, values, lines), verdict in zip(points, verdicts, strict=True)
    ]
    counts = Counter(v.status.value for v in verdicts)
    return await render(
        request,
        "business_results.html",
        {
            "customer": customer,
            "rows": rows,
            "refused": refused,
            "title": title,
            "counts": counts,
            "zone_label": ZONE_LABEL,
        },
    )


@routes.get("/receipts/{receipt:\\d{1,18}}")
async def receipt_page(request: web.Request) -> web.Response:
    """One submission of the contract with its verdict and, when it waits for it, the confirmation."""
    _, customer, _ = await _signed_in(request)
    found = await account_views.receipt(
        request.config_dict[ENGINE], int(request.match_info["receipt"]), account=customer.number
    )
    if found is None:
        raise web.HTTPNotFound()
    return await render(request, "business_receipt.html", {"r": found, "zone_label": ZONE_LABEL})


@routes.post("/receipts/{receipt:\\d{1,18}}/confirm")
async def confirm(request: web.Request) -> web.Response:
    """The contact vouches for a value that needed confirmation."""
    session, customer, _ = await _signed_in(request)
    receipt_id = int(request.match_info["receipt"])
    try:
        verdict = await held.confirm(
            request.config_dict[ENGINE],
            request.config_dict[CONFIG],
            receipt_id,
            f"cabinet:{_sender(session)}",
            request.config_dict[CLOCK](),
            account=customer.number,
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


def install(host: Host, app: web.Application) -> None:
    """Mount `/business/` unless `[cabinet] enabled` or `[cabinet] business` is false."""
    config = host.config.section("cabinet", CabinetConfig)
    if not (config.enabled and config.business):
        return
    shared_verifier(host, app)
    pages.mount_site(host, app, HOME, "mg_business", routes, "business_cabinet")
