"""One reading item pushed by a field device, as a Submission, and its verdict as the device is
told it: shared by HTTP push and MQTT.

An item is `{"id": "...", "meter": "SERIAL", "taken_at": "2026-11-24T10:00:00Z",
"values": {"T1": "123.4", "T2": 56.7}, "account": "..."}`; `value` may stand for `values` on a
single-rate meter (zone `T`), `id`, `taken_at` and `account` may be left out. A malformed item
raises `ItemError` with a message naming it as `readings[<index>]`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.model import Channel, Submission, Verdict


class ItemError(ValueError):
    """An item that is not a reading; the message says which field and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_time(text: Any, index: int) -> datetime:
    """An ISO 8601 time with a zone (`Z` allowed), as UTC."""
    if not isinstance(text, str):
        raise ItemError(f"readings[{index}].taken_at must be an ISO 8601 string with a zone")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ItemError(f"readings[{index}].taken_at {text[:40]!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise ItemError(f"readings[{index}].taken_at must carry a time zone (e.g. Z)")
    return moment.astimezone(UTC)


def submission_from_item(
    item: Any,
    index: int,
    *,
    channel: Channel,
    sender: str,
    now: datetime,
    message_id: Callable[[str, str], str],
    default_meter: str | None = None,
) -> Submission:
    """Check one item and build its Submission.

    `message_id(meter, item_id)` gives the channel message id of an item that has an `id`
    (items without one get none); `default_meter` stands for a missing `meter` (MQTT topics).
    """
    if not isinstance(item, dict):
        raise ItemError(f"readings[{index}] must be an object")
    meter = item.get("meter", default_meter)
    if not isinstance(meter, str) or not meter or len(meter) > 64:
        raise ItemError(f"readings[{index}].meter must be the meter serial (a string)")
    values = item.get("values")
    if values is None and "value" in item:
        values = {"T": item["value"]}
    if not isinstance(values, dict) or not values or len(values) > 4:
        raise ItemError(f'readings[{index}].values must be an object like {{"T1": "123.4"}}')
    for zone, value in values.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float) or len(str(zone)) > 4:
            raise ItemError(f"readings[{index}].values.{str(zone)[:8]} must be a number or a string")
    item_id = item.get("id")
    if item_id is not None and (not isinstance(item_id, str | int) or len(str(item_id)) > 100):
        raise ItemError(f"readings[{index}].id must be a string of at most 100 characters")
    taken_at = parse_time(item["taken_at"], index) if "taken_at" in item else None
    return Submission(
        channel=channel,
        received_at=now,
        sender=sender,
        meter_serial=meter,
        account=str(item["account"]) if item.get("account") is not None else None,
        values={
            str(z): v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)
            for z, v in values.items()
        },
        taken_at=taken_at,
        channel_message_id=None if item_id is None else message_id(meter, str(item_id)),
        raw=raw_of(item),
    )


def raw_of(item: dict[str, Any]) -> str:
    """The item as stored in the inbound log: compact JSON."""
    return orjson.dumps(item).decode()


def result_of(item: dict[str, Any], verdict: Verdict) -> dict[str, Any]:
    """One item's verdict as the device is told it: the HTTP answer's `results` entry, also
    published on the MQTT reply topic."""
    out = verdict.as_dict()
    out["id"] = item.get("id")
    return out
