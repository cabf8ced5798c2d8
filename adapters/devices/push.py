"""Field devices and head-end systems push readings: `POST /api/v1/readings` with a JSON batch.

Body: `{"readings": [{"id": "...", "meter": "SERIAL", "taken_at": "2026-11-24T10:00:00Z",
"values": {"T1": "123.4", "T2": 56.7}}, ...]}` (or a bare list). `id` is the device's own id
for the item and makes a retry idempotent; `value` may stand for `values` on a single-rate meter.
The answer lists a verdict per item, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from adapters.device_items.config import DevicesConfig
from adapters.device_items.items import ItemError, result_of, submission_from_item
from gateway.app_keys import CLOCK, CONFIG, INTAKE
from gateway.bounds import CONTROL
from gateway.config import Config
from gateway.host import Host
from gateway.http_api import ApiError, json_response, read_json, require_bearer
from gateway.intake import Clock, Intake
from gateway.model import Channel, Submission

routes = web.RouteTableDef()


def _submission(
    item: Any, index: int, device: str, now: datetime, message_id: Callable[[str, str], str]
) -> Submission:
    try:
        return submission_from_item(
            item, index, channel=Channel.DEVICE, sender=device, now=now, message_id=message_id
        )
    except ItemError as exc:
        raise ApiError(422, "bad_item", exc.message) from None


@routes.post("/api/v1/readings")
async def push_readings(request: web.Request) -> web.Response:
    """Decide a batch of device readings; answers 200 with a verdict per item."""
    config: Config = request.app[CONFIG]
    devices = config.section("devices", DevicesConfig)
    token = require_bearer(request, devices.tokens, "device")
    device = request.headers.get("X-Device-Id") or f"token-{devices.tokens.index(token) + 1}"
    if CONTROL.search(device):
        raise ApiError(400, "bad_device_id", "X-Device-Id must not hold control characters")
    body = await read_json(request)
    items = body.get("readings") if isinstance(body, dict) else body
    if not isinstance(items, list) or not items:
        raise ApiError(422, "bad_body", 'the body must be {"readings": [...]} with at least one item')
    if len(items) > devices.max_items:
        raise ApiError(413, "too_many_items", f"at most {devices.max_items} readings per request")
    clock: Clock = request.app[CLOCK]
    now = clock()
    sender = device[:64]

    def message_id(_meter: str, item_id: str) -> str:
        return f"{sender}:{item_id}"

    subs = [_submission(item, i, sender, now, message_id) for i, item in enumerate(items)]
    intake: Intake = request.app[INTAKE]
    verdicts = await intake.submit_many(subs)
    results = [result_of(item, verdict) for item, verdict in zip(items, verdicts, strict=True)]
    accepted = sum(1 for v in verdicts if v.accepted)
    return json_response({"accepted": accepted, "total": len(verdicts), "results": results})


def install(host: Host, app: web.Application) -> None:
    """Add this module's routes to the gateway's application."""
    app.add_routes(routes)
