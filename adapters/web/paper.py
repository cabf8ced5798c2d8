"""Paper forms on the operators' desk (`/operator/paper`): a batch of forms from the drop-box, fax
or mail typed in a grid driven entirely by the keyboard.

The grid is a plain form (it works without JavaScript: every row is checked when the batch is
saved); `static/paper.js` drives it: the account and Enter (its meter and zones are looked up,
`GET /operator/paper/account`), then each zone of its meter and Enter, the last one checking the
row as typed (`GET /operator/paper/check`, the core's own rules through `Intake.preview`, nothing
stored) and moving to the next row; Enter on an empty account goes to «Сохранить бланки».
Saving stores every row through the intake as `Channel.PAPER` with the employee and the forms'
date of receipt: the reading is dated that day (noon in the retailer's zone, or the moment of
entry when that is today), so a form dropped before the cut-off counts for its month however
late it is typed, and the raw message keeps the date, the way it came and the row.
"""

from __future__ import annotations

import re
import secrets
from datetime import date, datetime, time

import orjson
from aiohttp import web
from aiohttp_session import Session

from adapters.web import sessions
from adapters.web.pages import SECURITY_HEADERS, STATUS_RU, render
from gateway import accounts
from gateway.app_keys import CALENDAR, CLOCK, ENGINE, INTAKE
from gateway.calendar import WorkCalendar
from gateway.http_api import json_response
from gateway.intake import Intake
from gateway.model import Channel, Submission, Verdict
from gateway.validation.explain import ZONE_RU

HOME = "/operator/"
SCOPE = "operator"
ROWS = 8  # empty rows the grid starts with; the script adds more as they fill
MAX_ROWS = 200  # rows one batch may save
SOURCES = {"box": "ящик для показаний", "fax": "факс", "mail": "почта"}
_ACCOUNT = re.compile(r"^\d{1,32}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# The grid runs a script of the site's own and asks the site for JSON: the pages' policy with
# exactly that allowed.
GRID_POLICY = SECURITY_HEADERS["Content-Security-Policy"] + "; script-src 'self'; connect-src 'self'"

routes = web.RouteTableDef()


async def _employee(request: web.Request) -> Session:
    session = await sessions.session_subject(request, SCOPE)
    if session is None:
        raise web.HTTPSeeOther(HOME + "login")
    return session


@routes.get("/paper")
async def grid(request: web.Request) -> web.Response:
    session = await _employee(request)
    today = request.config_dict[CALENDAR].local_date(request.config_dict[CLOCK]())
    response = await render(
        request,
        "operator_paper.html",
        {
            "me": session["name"],
            "rows": range(1, ROWS + 1),
            "max_rows": MAX_ROWS,
            "received_on": today.isoformat(),
            "sources": SOURCES,
            "nonce": secrets.token_urlsafe(18),
        },
    )
    response.headers["Content-Security-Policy"] = GRID_POLICY
    return response


@routes.get("/paper/account")
async def account_meters(request: web.Request) -> web.Response:
    """An account's meters and their zones, for the grid's row (staff may see them)."""
    await _employee(request)
    number = request.query.get("number", "").strip()
    if not _ACCOUNT.match(number):
        return json_response({"found": False, "message": "Номер лицевого счёта — только цифры"})
    found = await accounts.meters_of_account(request.config_dict[ENGINE], number)
    if found is None:
        return json_response({"found": False, "message": f"Лицевой счёт {number} не найден"})
    meters = [
        {
            "serial": m.serial,
            "zones": list(m.zones),
            "names": [ZONE_RU.get(z) or "показание" for z in m.zones],
            "active": m.active,
        }
        for m in found
    ]
    if not meters:
        return json_response({"found": False, "message": f"У лицевого счёта {number} нет счётчиков"})
    return json_response({"found": True, "meters": meters})


def _received_on(text: str, calendar: WorkCalendar, now: datetime) -> date | None:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if day <= calendar.local_date(now) else None


def _dated(day: date, calendar: WorkCalendar, now: datetime) -> datetime | None:
    """The forms' date of receipt as the readings' moment: noon that day, the moment of entry today."""
    if day == calendar.local_date(now):
        return None
    return datetime.combine(day, time(12), tzinfo=calendar.timezone)


def _row_submission(
    session: Session,
    row: int,
    account: str,
    meter: str,
    values: tuple[str, ...],
    day: date,
    source: str,
    now: datetime,
    calendar: WorkCalendar,
    message_id: str | None,
) -> Submission:
    raw = {
        "form": "paper",
        "received_on": day.isoformat(),
        "source": source,
        "row": row,
        "account": account,
        "meter": meter,
        "values": list(values),
    }
    return Submission(
        channel=Channel.PAPER,
        received_at=now,
        sender=str(session["operator"]),
        employee=str(session["name"]),
        account=account,
        meter_serial=meter or None,
        positional_values=values,
        taken_at=_dated(day, calendar, now),
        channel_message_id=message_id,
        raw=orjson.dumps(raw).decode(),
    )


def _values(get: object, prefix: str) -> tuple[str, ...]:
    found = (" ".join(str(get(f"{prefix}v{i}", "")).split())[:20] for i in (1, 2, 3))  # type: ignore[operator]
    return tuple(v for v in found if v)


def _said(verdict: Verdict) -> dict[str, object]:
    return {
        "status": verdict.status.value,
        "said": ("повтор: " if verdict.duplicate else "") + STATUS_RU[verdict.status.value],
        "reasons": [r.message_ru for r in verdict.reasons],
        "receipt": verdict.receipt,
    }


@routes.get("/paper/check")
async def check_row(request: web.Request) -> web.Response:
    """What saving this row would give, stored nowhere: the core's rules on the stored history."""
    session = await _employee(request)
    calendar = request.config_dict[CALENDAR]
    now = request.config_dict[CLOCK]()
    q = request.query
    account = q.get("account", "").strip()[:40]
    day = _received_on(q.get("received_on", "")[:10], calendar, now)
    if not _ACCOUNT.match(account):
        return json_response(
            {
                "status": "rejected",
                "said": "не будет принято",
                "reasons": ["Номер лицевого счёта — только цифры"],
            }
        )
    if day is None:
        return json_response(
            {
                "status": "rejected",
                "said": "не будет принято",
                "reasons": ["Дата получения бланков — не позже сегодняшнего дня"],
            }
        )
    intake: Intake = request.config_dict[INTAKE]
    sub = _row_submission(
        session, 0, account, q.get("meter", "")[:64], _values(q.get, ""), day, "check", now, calendar, None
    )
    verdict = await intake.preview(sub)
    answer = _said(verdict)
    answer["said"] = {"accepted": "будет принято", "rejected": "не будет принято"}.get(
        verdict.status.value, "на проверку"
    )
    if verdict.duplicate:
        answer["said"] = "уже внесено"
    return json_response(answer)


@routes.post("/paper")
async def save(request: web.Request) -> web.Response:
    """Store every filled row of the batch, each through the intake; the page lists their verdicts."""
    session = await _employee(request)
    calendar = request.config_dict[CALENDAR]
    now = request.config_dict[CLOCK]()
    form = await request.post()
    day = _received_on(str(form.get("received_on", ""))[:10], calendar, now)
    source = str(form.get("source", "box"))
    source = source if source in SOURCES else "box"
    nonce = str(form.get("nonce", ""))
    rows = []
    for i in range(1, MAX_ROWS + 1):
        account = "".join(str(form.get(f"r{i}-account", "")).split())[:40]
        values = _values(form.get, f"r{i}-")
        if account or values:
            rows.append((i, account, str(form.get(f"r{i}-meter", "")).strip()[:64], values))
    if day is None or not rows:
        problem = (
            "Укажите дату получения бланков (не позже сегодняшнего дня)."
            if day is None
            else "Ни одна строка не заполнена."
        )
        response = await render(
            request,
            "operator_paper.html",
            {
                "me": session["name"], "rows": range(1, ROWS + 1), "max_rows": MAX_ROWS, "sources": SOURCES,
                "received_on": str(form.get("received_on", ""))[:10], "nonce": secrets.token_urlsafe(18), "error": problem,
            },
            status=422,
        )  # fmt: skip
        response.headers["Content-Security-Policy"] = GRID_POLICY
        return response
    intake: Intake = request.config_dict[INTAKE]
    subs = [
        _row_submission(
            session, i, account, meter, values, day, source, now, calendar,
            f"{session['operator']}:{nonce}:{i}" if _NONCE.match(nonce) else None,
        )
        for i, account, meter, values in rows
    ]  # fmt: skip
    verdicts = await intake.submit_many(subs)
    done = [
        {"row": i, "account": account, "values": values, "meter": v.meter_serial or meter, **_said(v)}
        for (i, account, meter, values), v in zip(rows, verdicts, strict=True)
    ]
    counts = {s: sum(1 for d in done if d["status"] == s) for s in ("accepted", "flagged", "rejected")}
    return await render(
        request,
        "operator_paper_saved.html",
        {
            "me": session["name"],
            "done": done,
            "counts": counts,
            "received_on": day,
            "source": SOURCES[source],
        },
    )
