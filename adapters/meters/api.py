"""`GET /api/v1/meters/{serial}/intervals`: a meter's interval data for billing and analysts (README,
"What billing receives from polled meters"), with a billing token.

Query: `from`, `to` (ISO 8601 times, `to` exclusive; a time without a zone is the retailer's
local time; default: the 24 hours up to now), `kind` (`register` or `energy`), `limit` (1..10000,
default 1000). Answers `{"meter_serial", "from", "to", "intervals": [...], "more"}`, oldest first;
`more` says the limit cut the list (ask again from the last `at`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from aiohttp import web

from adapters.meters import intervals
from gateway.app_keys import CLOCK, CONFIG, ENGINE
from gateway.bounds import CONTROL
from gateway.config import Config
from gateway.http_api import ApiError, json_response, require_bearer

if TYPE_CHECKING:
    from gateway.host import Host

routes = web.RouteTableDef()
MAX_SPAN = timedelta(days=400)


def _moment(request: web.Request, name: str, default: datetime, tz: ZoneInfo) -> datetime:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        moment = datetime.fromisoformat(text[:40])
    except ValueError:
        raise ApiError(400, "bad_time", f"{name} must be a time like 2026-11-01T00:00+03:00") from None
    if not 1970 <= moment.year <= 9000:  # year 1 or 9999 overflows in a zone shift or "a day before"
        raise ApiError(400, "bad_time", f"{name} must be a time like 2026-11-01T00:00+03:00")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


@routes.get("/api/v1/meters/{serial}/intervals")
async def list_meter_intervals(request: web.Request) -> web.Response:
    config: Config = request.app[CONFIG]
    require_bearer(request, config.billing.tokens, "billing")
    serial = request.match_info["serial"]
    if len(serial) > 64 or CONTROL.search(serial):
        raise ApiError(404, "meter_not_found", "a meter serial has at most 64 characters")
    tz = ZoneInfo(config.calendar.timezone)
    now = request.app[CLOCK]()
    # default: up to and including the present second
    until = _moment(request, "to", now.replace(microsecond=0) + timedelta(seconds=1), tz)
    since = _moment(request, "from", until - timedelta(days=1), tz)
    if not since < until or until - since > MAX_SPAN:
        raise ApiError(400, "bad_range", f"from must be before to, at most {MAX_SPAN.days} days apart")
    kind = request.query.get("kind")
    if kind is not None and kind not in intervals.KINDS:
        raise ApiError(400, "bad_kind", f"kind is one of {', '.join(intervals.KINDS)}")
    limit_text = request.query.get("limit", "1000")
    if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= intervals.MAX_LIST:
        raise ApiError(400, "bad_limit", f"limit must be a whole number from 1 to {intervals.MAX_LIST}")
    limit = int(limit_text)
    rows = await intervals.list_intervals(request.app[ENGINE], serial, since, until, kind, limit + 1)
    return json_response(
        {
            "meter_serial": serial,
            "from": since.isoformat(),
            "to": until.isoformat(),
            "intervals": rows[:limit],
            "more": len(rows) > limit,
        }
    )


def install(host: Host, app: web.Application) -> None:
    """The listing is there whenever billing tokens are: polled buses and head-end files fill it."""
    app.add_routes(routes)
