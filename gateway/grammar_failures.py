"""Why a resident's text was not understood: each failure with a reply that fits one Cyrillic SMS.

The grammar (gateway/grammar.py) returns these; the core stores them as `format_<code>` reasons
and the doors send `message_ru` as it is. Every `message_ru` is at most 70 UTF-16 units: echoed
tokens are cut to 10 characters and a format's example to 30 (gateway/formats.py). Where a
message shows the general example, it is the enabled format's (`example`); the others show the
form they are about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

FAILURE_CODES: Final = (
    "empty",
    "no_value",
    "bad_value",
    "too_many_values",
    "mixed_zones",
    "duplicate_zone",
    "unknown_words",
    "too_long",
    "not_electricity",
    "several_meters",
)  # and "unclear": not the grammar's, the core's when the registry cannot choose (see `unclear`)


@dataclass(frozen=True, slots=True)
class ParseFailure:
    """Why the text was not understood, with a reply that fits one SMS."""

    code: str  # one of FAILURE_CODES; stable, the core and reports key on it
    message_ru: str  # what was expected, with an example; <= 70 UTF-16 units (one Cyrillic SMS)
    message_en: str


def echo(token: str) -> str:
    """A short, SMS-safe quote of the offending token (BMP only: astral chars cost 2 units)."""
    clean = "".join(ch if ch.isprintable() and ord(ch) < 0x10000 and ch not in "«»" else "?" for ch in token)
    return clean if len(clean) <= 10 else clean[:9] + "…"


def empty(example: str) -> ParseFailure:
    return ParseFailure(
        "empty",
        f"Пустое сообщение. Пример: {example}",
        "Empty message. Example: 1234567 12345 (account reading)",
    )


def too_long(example: str) -> ParseFailure:
    return ParseFailure(
        "too_long",
        f"Слишком длинно. Пришлите только: {example}",
        "Too long. Send just: 1234567 12345 (account reading)",
    )


def no_value(example: str) -> ParseFailure:
    return ParseFailure(
        "no_value",
        f"Нет показания. Пример: {example}",
        "No reading. Example: 1234567 12345 (account reading)",
    )


def zone_without_value(label: str) -> ParseFailure:
    return ParseFailure(
        "no_value",
        f"После «{echo(label)}» нужно число. Пример: 1234567 Т1 123 Т2 45",
        f"A number must follow '{label}'. Example: 1234567 T1 123 T2 45",
    )


def account_without_number() -> ParseFailure:
    return ParseFailure(
        "no_value",
        "После «ЛС» нужен номер. Пример: ЛС 1234567 показания 12345",
        "An account number must follow 'ЛС'. Example: ЛС 1234567 12345",
    )


def bad_number(token: str) -> ParseFailure:
    return ParseFailure(
        "bad_value",
        f"Не число: «{echo(token)}». Пример: 1234567 12345,6",
        f"Not a number: '{token[:20]}'. Example: 1234567 12345.6",
    )


def negative(token: str) -> ParseFailure:
    return ParseFailure(
        "bad_value",
        f"Показание без знака: «{echo(token)}». Пример: 1234567 12345",
        f"A reading has no sign: '{token[:20]}'. Example: 1234567 12345",
    )


def too_many_decimals(token: str) -> ParseFailure:
    return ParseFailure(
        "bad_value",
        "Не больше 3 знаков после запятой. Пример: 1234567 12345,6",
        f"At most 3 decimals ('{token[:20]}'). Example: 1234567 12345.6",
    )


def bad_account(token: str) -> ParseFailure:
    return ParseFailure(
        "bad_value",
        f"ЛС «{echo(token)}»: нужно 5-12 цифр. Пример: 1234567 12345",
        f"Account '{token[:20]}': 5-12 digits expected. Example: 1234567 12345",
    )


def two_accounts(example: str) -> ParseFailure:
    return ParseFailure(
        "bad_value",
        f"Укажите один ЛС. Пример: {example}",
        "Give one account. Example: 1234567 12345 (account reading)",
    )


def bad_serial(token: str) -> ParseFailure:
    return ParseFailure(
        "bad_value",
        f"Номер счётчика «{echo(token)}»? Пример: 1234567#SN123#12345",
        f"Meter serial '{token[:20]}': letters, digits, dashes. Example: 1234567#SN123#12345",
    )


def unknown_words(token: str, example: str) -> ParseFailure:
    return ParseFailure(
        "unknown_words",
        f"Непонятно: «{echo(token)}». Пример: {example}",
        f"Not understood: '{token[:20]}'. Example: 1234567 12345 (account reading)",
    )


def too_many_values() -> ParseFailure:
    return ParseFailure(
        "too_many_values",
        "Не больше 3 показаний. Пример: 1234567 Т1 123 Т2 45 Т3 67",
        "At most 3 readings. Example: 1234567 T1 123 T2 45 T3 67",
    )


def mixed_zones() -> ParseFailure:
    return ParseFailure(
        "mixed_zones",
        "Зону укажите у каждого числа или ни у одного: 1234567 Т1 123 Т2 45",
        "Label every value with its zone or none: 1234567 T1 123 T2 45",
    )


def duplicate_zone(zone: str) -> ParseFailure:
    ru_zone = zone.replace("T", "Т")
    return ParseFailure(
        "duplicate_zone",
        f"Зона {ru_zone} указана дважды. Пример: 1234567 Т1 123 Т2 45",
        f"Zone {zone} is given twice. Example: 1234567 T1 123 T2 45",
    )


def not_electricity(code: str, what: str) -> ParseFailure:
    """Only codes of other meters (water): this gateway takes electricity readings only."""
    return ParseFailure(
        "not_electricity",
        f"«{echo(code)}» ({what[:20]}) не принимаем: только электроэнергия",
        f"'{code}' ({what}): this number takes electricity readings only",
    )


def several_meters() -> ParseFailure:
    return ParseFailure(
        "several_meters",
        "Один счётчик в сообщении. Пример: 1234567 1Э12345",
        "One meter per message. Example: 1234567 1Э12345",
    )


def unclear(part: str, example: str) -> ParseFailure:
    """Two readings of the text, and the registry supports none of them or both: `part` is
    what they disagree on (the number that is a meter's serial or a value)."""
    return ParseFailure(
        "unclear",
        f"Непонятно: «{echo(part)}». Пример: {example}",
        f"Not understood: '{part[:20]}' (a meter number or a reading?). Example: {example}",
    )
