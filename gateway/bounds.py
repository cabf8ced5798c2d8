"""What any store can keep of a Submission, whichever channel built it.

Channels bound their inputs at the edge (a 4xx naming the field); this is the core's own line,
so that no submission can make a group's transaction fail for everyone in it: PostgreSQL
refuses a NUL character anywhere in a text parameter, identifiers must fit their columns
(`inbound.channel_message_id` 128, `source` 128, `readings.employee` 128), and a moment must be
convertible into any time zone (9999-12-31T23:59:59Z is not, in Moscow). A submission outside
these bounds is decided as rejected with the reason `unprocessable` naming the field, and stored
with the offending characters replaced (`storable`), so a retry is recognised by its id.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

from gateway.model import Reason, Severity, Submission

# C0 controls and DEL: never part of an identifier, a phone, a zone or a value.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REPLACEMENT = "\ufffd"
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
# (field, attribute, longest): a phone normalises to "+digits", masked into `source` (128);
# other senders (MQTT topics, chat references) are cut to fit it.
_IDENTIFIERS = (
    ("sender", "sender", 127),
    ("account", "account", 64),
    ("meter", "meter_serial", 64),
    ("id", "channel_message_id", 128),
    ("employee", "employee", 128),
)
_FIELD_RU = {
    "sender": "отправитель",
    "account": "л/с",
    "meter": "счётчик",
    "id": "номер сообщения",
    "employee": "сотрудник",
    "values": "показания",
    "text": "текст",
    "raw": "сообщение",
    "taken_at": "дата показаний",
}


def unfit_field(sub: Submission) -> str | None:
    """The first field of `sub` no store can keep as it is, or None (the usual case)."""
    for name, attribute, longest in _IDENTIFIERS:
        value = getattr(sub, attribute)
        if value is not None and (len(value) > longest or CONTROL.search(value)):
            return name
    for zone, value in sub.values.items():
        if len(zone) > 8 or len(value) > 64 or CONTROL.search(zone) or CONTROL.search(value):
            return "values"
    for value in sub.positional_values:
        if len(value) > 64 or CONTROL.search(value):
            return "values"
    if sub.text is not None and "\x00" in sub.text:
        return "text"
    if "\x00" in sub.raw:
        return "raw"
    moment = sub.taken_at
    if moment is not None and (moment.tzinfo is None or not EARLIEST <= moment <= LATEST):
        return "taken_at"
    return None


def _clean(value: str, longest: int | None = None) -> str:
    value = CONTROL.sub(_REPLACEMENT, value)
    return value if longest is None else value[:longest]


def storable(sub: Submission) -> Submission:
    """`sub` with what no store can keep replaced: controls by U+FFFD, over-long ids cut, an
    unusable `taken_at` dropped (the refusal names it)."""
    changes: dict[str, object] = {
        attribute: _clean(value, longest)
        for _name, attribute, longest in _IDENTIFIERS
        if (value := getattr(sub, attribute)) is not None
    }
    changes["values"] = {_clean(z, 8): _clean(v, 64) for z, v in sub.values.items()}
    changes["positional_values"] = tuple(_clean(v, 64) for v in sub.positional_values)
    changes["raw"] = sub.raw.replace("\x00", _REPLACEMENT)
    if sub.text is not None:
        changes["text"] = sub.text.replace("\x00", _REPLACEMENT)
    moment = sub.taken_at
    if moment is not None and (moment.tzinfo is None or not EARLIEST <= moment <= LATEST):
        changes["taken_at"] = None
    return replace(sub, **changes)  # type: ignore[arg-type]


def unprocessable(field: str | None) -> Reason:
    """The reason of a submission that could not be decided: a field out of bounds, or (None)
    one whose decision failed where every other submission's did not."""
    if field is None:
        return Reason(
            "unprocessable",
            Severity.REJECT,
            "Не удалось обработать. Проверьте и пришлите снова",
            "the submission could not be processed; check it and send it again",
        )
    return Reason(
        "unprocessable",
        Severity.REJECT,
        f"Не удалось обработать: {_FIELD_RU.get(field, field)}. Проверьте",
        f"the submission could not be processed: {field} holds control characters, "
        "is too long or out of range",
    )
