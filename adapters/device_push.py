"""Field devices and head-end systems push readings: `POST /api/v1/readings` with a JSON batch.

Body: `{"readings": [{"id": "...", "meter": "SERIAL", "taken_at": "2026-11-24T10:00:00Z",
"values": {"T1": "123.4", "T2": 56.7}}, ...]}` (or a bare list). `id` is the device's own id
for the item and makes a retry idempotent; `value` may stand for `values` on a single-rate meter.
The answer lists a verdict per item, in order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from adapters.app_keys import CLOCK, CONFIG, INTAKE
from adapters.http_common import ApiError, json_response, read_json, require_bearer
from gateway.config import Config
from gateway.intake import Clock, Intake
from gateway.model import Channel, Submission

if TYPE_CHECKING:
    from gateway.service import Gateway

routes = web.RouteTableDef()


def _parse_time(text: Any, index: int) -> datetime:
    if not isinstance(text, str):
        raise ApiError(422, "bad_item", f"readings[{index}].taken_at must be an ISO 8601 string with a zone")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, "bad_item", f"readings[{index}].taken_at {text[:40]!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise ApiError(422, "bad_item", f"readings[{index}].taken_at must carry a time zone (e.g. Z)")
    return moment.astimezone(UTC)


def _submission(item: Any, index: int, device: str, now: datetime) -> Submission:
    if not isinstance(item, dict):
        raise ApiError(422, "bad_item", f"readings[{index}] must be an object")
    meter = item.get("meter")
    if not isinstance(meter, str) or not meter or len(meter) > 64:
        raise ApiError(422, "bad_item", f"readings[{index}].meter must be the meter serial (a string)")
    values = item.get("values")
    if values is None and "value" in item:
        values = {"T": item["value"]}
    if not isinstance(values, dict) or not values or len(values) > 4:
        raise ApiError(422, "bad_item", f'readings[{index}].values must be an object like {{"T1": "123.4"}}')
    for zone, value in values.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float) or len(str(zone)) > 4:
            raise ApiError(
                422, "bad_item", f"readings[{index}].values.{str(zone)[:8]} must be a number or a string"
            )
    item_id = item.get("id")
    if item_id is not None and (not isinstance(item_id, str | int) or len(str(item_id)) > 100):
        raise ApiError(422, "bad_item", f"readings[{index}].id must be a string of at most 100 characters")
    taken_at = _parse_time(item["taken_at"], index) if "taken_at" in item else None
    return Submission(
        channel=Channel.DEVICE,
        received_at=now,
        sender=device,
        meter_serial=meter,
        account=str(item["account"]) if item.get("account") is not None else None,
        values={
            str(z): v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)
            for z, v in values.items()
        },
        taken_at=taken_at,
        channel_message_id=None if item_id is None else f"{device}:{item_id}",
        raw=_raw(item),
    )


def _raw(item: dict[str, Any]) -> str:
    import orjson

    return orjson.dumps(item).decode()


@routes.post("/api/v1/readings")
async def push_readings(request: web.Request) -> web.Response:
    """Decide a batch of device readings; answers 200 with a verdict per item."""
    config: Config = request.app[CONFIG]
    token = require_bearer(request, config.devices.tokens, "device")
    device = request.headers.get("X-Device-Id") or f"token-{config.devices.tokens.index(token) + 1}"
    body = await read_json(request)
    items = body.get("readings") if isinstance(body, dict) else body
    if not isinstance(items, list) or not items:
        raise ApiError(422, "bad_body", 'the body must be {"readings": [...]} with at least one item')
    if len(items) > config.devices.max_items:
        raise ApiError(413, "too_many_items", f"at most {config.devices.max_items} readings per request")
    clock: Clock = request.app[CLOCK]
    now = clock()
    subs = [_submission(item, i, device[:64], now) for i, item in enumerate(items)]
    intake: Intake = request.app[INTAKE]
    verdicts = await intake.submit_many(subs)
    results = []
    for item, verdict in zip(items, verdicts, strict=True):
        out = verdict.as_dict()
        out["id"] = item.get("id")
        results.append(out)
    accepted = sum(1 for v in verdicts if v.accepted)
    return json_response({"accepted": accepted, "total": len(verdicts), "results": results})


def install(gateway: Gateway, app: web.Application) -> None:
    """Add this module's routes to the gateway's application."""
    app.add_routes(routes)
