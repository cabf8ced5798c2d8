"""What residents read by SMS: verdicts, command answers and reminders, each in one SMS if at all possible.

A Cyrillic SMS is sent in UCS-2: 70 characters (UTF-16 code units) in one message, 67 in each
part of a concatenated one. Every text here is chosen from a list of variants, most detailed
first: the first that fits ONE message wins; when none does, the first that fits `max_chars`
(at most 134 = two parts); as a last resort the least detailed one is cut with "…". So a reply
never costs more than two parts, and costs one wherever the numbers allow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from gateway.grammar import HELP_RU
from gateway.model import ReadingOut, Reason, Severity, Status, Verdict

UCS2_SINGLE = 70  # UTF-16 units in one UCS-2 SMS
UCS2_PART = 67  # ... in each part of a concatenated one (6 octets go to the UDH)
GSM_SINGLE = 160  # septets in one GSM 7-bit SMS
GSM_PART = 153
MAX_PARTS = 2
MAX_CHARS = MAX_PARTS * UCS2_PART  # 134

# GSM 03.38 default alphabet; the extension table's characters take two septets.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")

ZONE_LABEL = {"T": "", "T1": "Т1", "T2": "Т2", "T3": "Т3"}  # Cyrillic Т, as on bills

NOTHING_TO_CONFIRM = "Нет показаний, ждущих подтверждения. Пример: 1234567 12345"
UNSUBSCRIBED = "Напоминания отключены. Показания принимаем. Вернуть: СТАРТ"
SUBSCRIBED = "Напоминания включены. Отключить: СТОП"
SEND_CORRECTED = "Пришлите верные показания, например: 1234567 12345"
# The held-readings job's reminder to confirm (gateway/held_job.py words the other notices).
CONFIRM_REMINDER = "Показания {values} (л/с {account}) ждут подтверждения. Если верно, ответьте ДА."


def utf16_units(text: str) -> int:
    """Length as a phone counts it in UCS-2: UTF-16 code units (an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def is_gsm7(text: str) -> bool:
    """True when the text can go in the GSM 7-bit alphabet (160 characters per SMS)."""
    return all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in text)


def sms_parts(text: str) -> int:
    """How many SMS this text takes (0 for an empty one)."""
    if not text:
        return 0
    if is_gsm7(text):
        septets = len(text) + sum(1 for ch in text if ch in _GSM_EXTENDED)
        return 1 if septets <= GSM_SINGLE else math.ceil(septets / GSM_PART)
    units = utf16_units(text)
    return 1 if units <= UCS2_SINGLE else math.ceil(units / UCS2_PART)


def needs_ucs2(text: str) -> bool:
    """Whether the SMS must be sent as UCS-2 (Kannel coding 2) to arrive intact."""
    return not is_gsm7(text)


def cut(text: str, max_chars: int) -> str:
    """`text` shortened to `max_chars` UTF-16 units, ending with "…" when anything was cut."""
    if utf16_units(text) <= max_chars:
        return text
    out = ""
    for ch in text:
        if utf16_units(out + ch) > max_chars - 1:
            break
        out += ch
    return out.rstrip(" ,.;:") + "…"


def choose(variants: Sequence[str], max_chars: int = MAX_CHARS) -> str:
    """The first variant that fits one SMS, else the first within `max_chars`, else the last cut."""
    limit = min(max_chars, MAX_CHARS)
    for text in variants:
        if sms_parts(text) == 1 and utf16_units(text) <= limit:
            return text
    for text in variants:
        if utf16_units(text) <= limit and sms_parts(text) <= MAX_PARTS:
            return text
    return cut(variants[-1], limit)


def _sentence(*parts: str) -> str:
    """Join phrases into sentences: "a. b. c", without doubling a final "." or "?"."""
    out = ""
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if out:
            out += " " if out[-1] in ".!?…" else ". "
        out += part
    return out


def _value(value: Decimal | None) -> str:
    return "?" if value is None else format(value, "f")


def values_text(readings: Sequence[ReadingOut]) -> str:
    """'Т1 12345, Т2 4567' for zones, '12345' for a single-rate meter."""
    order = {"T": 0, "T1": 1, "T2": 2, "T3": 3}
    items = []
    for r in sorted(readings, key=lambda r: order.get(r.zone, 9)):
        label = ZONE_LABEL.get(r.zone, r.zone)
        items.append(f"{label} {_value(r.value)}" if label else _value(r.value))
    return ", ".join(items)


def _first(reasons: Sequence[Reason], severity: Severity) -> Reason | None:
    return next((r for r in reasons if r.severity is severity), None)


# Informational notes the sender must still be told on an accepted reading ("counted for next
# month"); "confirmed"/"released" only repeat what "Принято" already says.
_SILENT_NOTES = {"confirmed", "released"}


def render_verdict(verdict: Verdict, max_chars: int = MAX_CHARS, show_meter: bool = False) -> str:
    """The reply SMS for a verdict: what was accepted (echoing account, meter, zones) or why not.

    `show_meter` adds the meter serial ("сч. M-4A"): for messages that named it, i.e. accounts
    with several meters.
    """
    vals = values_text(verdict.readings)
    where = ""
    if verdict.account:
        where = f"л/с {verdict.account}"
        if show_meter and verdict.meter_serial:
            where += f", сч. {verdict.meter_serial}"
    receipt = f"№{verdict.receipt}" if verdict.receipt is not None else ""
    notes = [
        r.message_ru for r in verdict.reasons if r.severity is Severity.INFO and r.code not in _SILENT_NOTES
    ]

    if verdict.status is Status.REJECTED:
        why = _first(verdict.reasons, Severity.REJECT) or (verdict.reasons[0] if verdict.reasons else None)
        message = why.message_ru if why else "Показания не приняты"
        return choose([_sentence("Не принято", message), message], max_chars)

    if verdict.status is Status.NEEDS_CONFIRMATION:
        why = _first(verdict.reasons, Severity.CONFIRM)
        message = why.message_ru if why else "Необычный расход"
        ask = "Если верно, ответьте ДА"
        variants = [f"{vals} ({where}): {message}"] if where else []
        variants += [f"{vals}: {message}", message]
        return choose(
            [_sentence(v, ask) for v in variants] + [_sentence(message, "Верно? Ответьте ДА")], max_chars
        )

    if verdict.status is Status.FLAGGED:
        head = f"Получено, на проверке: {vals}"
        why = _first(verdict.reasons, Severity.FLAG)
        flag = [why.message_ru] if why else []
        return choose(
            [
                _sentence(f"{head} ({where})" if where else head, receipt, *flag, *notes),
                _sentence(f"{head} ({where})" if where else head, receipt, *notes),
                _sentence(head, receipt, *notes),
                _sentence(head, *notes),
            ],
            max_chars,
        )

    head = f"Принято: {vals}" if vals else "Принято"
    return choose(
        [
            _sentence(f"{head} ({where})" if where else head, receipt, *notes),
            _sentence(f"{head} ({where})" if where else head, *notes),
            _sentence(head, receipt, *notes),
            _sentence(head, *notes),
        ],
        max_chars,
    )


def render_help(max_chars: int = MAX_CHARS) -> str:
    """The format hint, as printed on bills."""
    return choose([HELP_RU], max_chars)


def render_reminder(
    kind: str,
    account_numbers: Sequence[str],
    window_end: date,
    today: date,
    max_chars: int = MAX_CHARS,
    contacts: str = "",
) -> str:
    """A reminder to submit readings for these accounts, by `window_end` (the last day of the
    window); `contacts`, the branch's (where to ask), kept when the text still fits."""
    until = f"{window_end.day:02d}.{window_end.month:02d}"
    example = f"Пример: {account_numbers[0]} 12345" if account_numbers else ""
    named = [", ".join(account_numbers)]
    if len(account_numbers) > 2:  # many accounts: name the first, count the rest
        named.append(f"{account_numbers[0]} и ещё {len(account_numbers) - 1}")
    variants: list[str] = []
    for accts in named:
        if kind == "last_day" and today == window_end:
            lead = f"Сегодня последний день приёма показаний по л/с {accts}"
            short = f"Сегодня последний день приёма показаний, л/с {accts}"
        elif kind == "last_day":
            lead = f"Показания по л/с {accts} принимаем только до {until}"
            short = f"Показания, л/с {accts}: приём до {until}"
        else:
            lead = f"Передайте показания по л/с {accts} до {until}"
            short = f"Показания по л/с {accts}: до {until}"
        if contacts:
            variants += [
                _sentence(lead, example, contacts),
                _sentence(lead, contacts),
                _sentence(short, contacts),
            ]
        variants += [
            _sentence(lead, example, "Отписка: СТОП"),
            _sentence(lead, example),
            _sentence(short, example),
            _sentence(lead),
            _sentence(short),
        ]
    # Nothing of the above fits: say the date, which matters most.
    variants.append(f"Показания принимаем до {until}")
    return choose(variants, max_chars)
