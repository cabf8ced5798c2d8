"""One reading item pushed by a field device, as a Submission, and its verdict as the device is
told it: shared by HTTP push and MQTT.

An item is `{"id": "...", "meter": "SERIAL", "taken_at": "2026-11-24T10:00:00Z",
"values": {"T1": "123.4", "T2": 56.7}, "account": "..."}`; `value` may stand for `values` on a
single-rate meter (zone `T`), `id`, `taken_at` and `account` may be left out. A malformed item
raises `ItemError` with a message naming it as `readings[<index>]`: so does one out of bounds
(ids and serials without control characters and at most 100/64/32 characters, zones at most 4,
value strings at most 32, `taken_at` from 2000 to 2099), so that nothing a device sends can
reach the database in a form it refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from gateway.bounds import CONTROL
from gateway.model import Channel, Submission, Verdict


class ItemError(ValueError):
    """An item that is not a reading; the message says which field and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# What a device may date a reading: wide enough for any clock that is merely wrong (the rules
# answer `future_reading` or `too_old`), narrow enough to convert into any time zone.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def parse_time(text: Any, index: int) -> datetime:
    """An ISO 8601 time with a zone (`Z` allowed), as UTC, from 2000 to 2099."""
    if not isinstance(text, str) or len(text) > 40:
        raise ItemError(f"readings[{index}].taken_at must be an ISO 8601 string with a zone")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ItemError(f"readings[{index}].taken_at {text[:40]!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise ItemError(f"readings[{index}].taken_at must carry a time zone (e.g. Z)")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before the first representable moment
        moment = EARLIEST - timedelta(days=1)
    if not EARLIEST <= moment < LATEST:
        raise ItemError(f"readings[{index}].taken_at must be between 2000-01-01 and 2099-12-31")
    return moment


def _text(value: Any, where: str, longest: int) -> str:
    """A short identifier: a string (or a whole number) without control characters."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ItemError(f"{where} must be a string")
    text = str(value)
    if not text or len(text) > longest or CONTROL.search(text):
        raise ItemError(f"{where} must be 1 to {longest} characters without control characters")
    return text


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
    if not isinstance(meter, str):
        raise ItemError(f"readings[{index}].meter must be the meter serial (a string)")
    meter = _text(meter, f"readings[{index}].meter", 64)
    values = item.get("values")
    if values is None and "value" in item:
        values = {"T": item["value"]}
    if not isinstance(values, dict) or not values or len(values) > 4:
        raise ItemError(f'readings[{index}].values must be an object like {{"T1": "123.4"}}')
    for zone, value in values.items():
        where = f"readings[{index}].values.{CONTROL.sub('?', str(zone))[:8]}"
        if not zone or len(zone) > 4 or CONTROL.search(zone):
            raise ItemError(f"{where}: a zone is T, T1, T2 or T3")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ItemError(f"{where} must be a number or a string")
        if isinstance(value, str) and (len(value) > 32 or CONTROL.search(value)):
            raise ItemError(f"{where} must be at most 32 characters without control characters")
    item_id = item.get("id")
    if item_id is not None:
        item_id = _text(item_id, f"readings[{index}].id", 100)
    account = item.get("account")
    if account is not None:
        account = _text(account, f"readings[{index}].account", 32)
    taken_at = parse_time(item["taken_at"], index) if "taken_at" in item else None
    return Submission(
        channel=channel,
        received_at=now,
        sender=sender,
        meter_serial=meter,
        account=account,
        values={
            str(z): v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)
            for z, v in values.items()
        },
        taken_at=taken_at,
        channel_message_id=None if item_id is None else message_id(meter, item_id),
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
