"""The one grammar for what residents type: SMS, Telegram and (numbers only) the IVR keypad.

Pure: no I/O and no registry look-ups. `parse_message` says what the text says; the core then
resolves the account, meter and zones against the registry and validates the values.

Heuristics (each one is also pinned by tests/gateway/test_grammar.py):

* Matching is case-insensitive and Latin look-alike letters count as Cyrillic ("T1" == "Т1",
  "H6789" == "Н6789", "cтoп" == "стоп"); "ё" counts as "е".
* Tokens are separated by any mix of spaces, tabs, line breaks, ",", ";", ":", "=", brackets,
  quotes, "!", "?" and free-standing dashes and dots. Digit groups are never joined: "12 345"
  is two numbers (and "1 234 567" three values), as the brief requires.
* A comma directly between digits is a decimal comma ("12345,6") when 1-3 digits follow it and
  no further ",digits"/".digits" group is chained on; otherwise it separates numbers:
  "1234567,12345" (a value never has 4+ decimals) and "100,200,300" are lists. A point is
  always a decimal point ("12345.6789" is refused: too many decimals).
* Values: up to 3 decimals, no sign (negative or "+" values are refused). They are normalised:
  leading zeros dropped ("0" kept), "," -> ".", trailing zeros after the point and a bare
  trailing point dropped: "012345,60" -> "12345.6", "12345." -> "12345", "0,000" -> "0".
* Units (квт, кВт, кВт·ч, квтч, kwh, ...) and a few filler words (показания, greetings,
  "спасибо") are ignored; any other word is refused as "unknown_words" rather than guessed at.
* Account: the number after "ЛС", "л/с", "лицевой счёт", "№", "account"; otherwise the FIRST
  number when it is bare (no zone label), has no decimal part, has 5-12 digits and at least one
  more value follows. A lone number is a reading. Leading zeros of an account are kept.
* Zones: Т1/д/день/пик -> "T1", Т2/н/ночь -> "T2", Т3/полупик -> "T3" (the Russian convention:
  T1 peak/day, T2 night, T3 half-peak). A label may be glued to its number ("Д12345",
  "Т112345") or joined by "=", ":", "-". Labelled values are returned sorted T1, T2, T3; bare
  values keep their order with zone None (the core maps position 1, 2, 3 to T1, T2, T3, or a
  single value to a single-rate "T"). Labels and bare values in one message are refused.
* "<account>#<serial>#<value>[#<value>...]" is recognised by its 2+ "#"; with one "#" it is an
  ordinary separator ("12345#" is the reading 12345, "1234567#12345" account and reading). So
  "1234567#12345#6789" is account, serial "12345", value: the registry look-up catches a wrong
  serial. The serial is returned upper-case with Cyrillic look-alikes folded to Latin
  ("сн-1" -> "CH-1"), as nameplates print it; spaces or other symbols in it are refused.
* Input longer than 500 characters is refused before any parsing.

Failure codes: "empty", "no_value", "bad_value", "too_many_values", "mixed_zones",
"unknown_words", plus "duplicate_zone" (the same zone twice) and "too_long" (over 500 chars).
Every message_ru fits one Cyrillic (UCS-2) SMS: at most 70 UTF-16 code units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "FAILURE_CODES",
    "HELP_EN",
    "HELP_RU",
    "MAX_DECIMALS",
    "MAX_MESSAGE_CHARS",
    "Command",
    "ParseFailure",
    "ParsedReading",
    "parse_dtmf_number",
    "parse_message",
]

MAX_MESSAGE_CHARS: Final = 500  # a resident's reading is ~30 chars; anything this long is not one
MAX_DECIMALS: Final = 3  # meters display at most 3 decimals; more means a typo or joined numbers
ACCOUNT_DIGITS: Final = (5, 12)  # the retailer's account numbers (лицевой счёт) are 5-12 digits
SMS_UNITS: Final = 70  # one Cyrillic SMS is UCS-2: 70 UTF-16 code units

HELP_RU: Final = "Пример: 1234567 12345 (ЛС показание); зоны: 1234567 Т1 123 Т2 45"
HELP_EN: Final = "Example: 1234567 12345 (account reading); zones: 1234567 T1 123 T2 45"

FAILURE_CODES: Final = (
    "empty",
    "no_value",
    "bad_value",
    "too_many_values",
    "mixed_zones",
    "duplicate_zone",
    "unknown_words",
    "too_long",
)


@dataclass(frozen=True, slots=True)
class ParsedReading:
    """What a reading message says: maybe an account, maybe a serial, and 1-3 values."""

    account: str | None  # digits of the лицевой счёт as typed (leading zeros kept), None if absent
    meter_serial: str | None  # only from the <account>#<serial>#<value> form
    values: tuple[tuple[str | None, str], ...]  # (zone "T1"/"T2"/"T3" or None = by position, value)


@dataclass(frozen=True, slots=True)
class Command:
    """A whole-message command word."""

    name: str  # "help" | "confirm" | "correct" | "stop" | "start" | "history"


@dataclass(frozen=True, slots=True)
class ParseFailure:
    """Why the text was not understood, with a reply that fits one SMS."""

    code: str  # one of FAILURE_CODES; stable, the core and reports key on it
    message_ru: str  # what was expected, with an example; <= 70 UTF-16 units (one Cyrillic SMS)
    message_en: str


# --- normalisation ---------------------------------------------------------------------------

# Latin letters that look like Cyrillic ones (after casefold). Residents switch keyboard layouts
# mid-word, so "T1", "cтoп" and "kWh" must match the Cyrillic keywords.
_LATIN_TO_CYRILLIC = str.maketrans(
    {
        "a": "а",
        "b": "в",
        "c": "с",
        "e": "е",
        "h": "н",
        "k": "к",
        "m": "м",
        "o": "о",
        "p": "р",
        "t": "т",
        "x": "х",
        "y": "у",
        "ё": "е",
        # every dash and minus is one "-", so "день — 100" and "−100" are seen for what they are
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2015": "-",
        "\u2212": "-",
        # middle dots of "кВт·ч"
        "\u22c5": "·",
        "\u2022": "·",
        "\u2219": "·",
        # invisible characters that phones and copy-paste insert
        "\u200b": " ",
        "\u200c": " ",
        "\u200d": " ",
        "\u2060": " ",
        "\ufeff": " ",
    }
)

# Serials are printed in Latin capitals; a resident may type the look-alike Cyrillic ones.
_CYRILLIC_TO_LATIN_UPPER = str.maketrans("АВСЕНКМОРТХУ", "ABCEHKMOPTXY")


def _fold(text: str) -> str:
    """Casefold and map look-alikes so that one keyword spelling matches all of them."""
    return text.casefold().translate(_LATIN_TO_CYRILLIC)


_SEP_CHARS = r"\s,;:=()\[\]{}\"'«»„“”!?…"
# Dashes and dots separate only when free-standing ("день - 100", "12345 ."): a dash glued to
# digits is a minus, a dot glued to digits is a decimal point or ends the number ("12345.").
_SEP = re.compile(rf"(?:[{_SEP_CHARS}]|[-.]+(?=[{_SEP_CHARS}]|$))+")
_WORD = re.compile(rf"[^{_SEP_CHARS}]+")
_NOT_LETTER = r"(?![^\W\d_])"  # keywords end where letters end; digits may follow ("Д12345")


def _keywords(words: list[str]) -> str:
    """Regex alternation of folded keywords, longest first so "полупик" beats "пик"."""
    folded = sorted({_fold(w) for w in words}, key=len, reverse=True)
    return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in folded)


_UNIT = r"к(?:вт|wт?)(?:[·*/.\-]?[чн])?\.?"  # квт, кВт·ч, квтч, квт.ч, kw, kwh (after folding)
_FILLER_WORDS = [
    "показания",
    "показание",
    "показаний",
    "показ",
    "пок",
    "передаю",
    "передаём",
    "электроэнергия",
    "электроэнергии",
    "эл/эн",
    "и",
    "здравствуйте",
    "здраствуйте",
    "добрый день",
    "добрый вечер",
    "доброе утро",
    "добрый",
    "привет",
    "спасибо",
    "пожалуйста",
]
_FILLER = re.compile(rf"(?:(?:{_keywords(_FILLER_WORDS)})\.?|{_UNIT}){_NOT_LETTER}")
_ACCOUNT_WORDS = [
    "лс",
    "л/с",
    "л.с",
    "л/сч",
    "лиц.счет",
    "лиц.сч",
    "лицевой счет",
    "лицевой",
    "лиц",
    "счет",
    "сч",
    "account",
    "acc",
]
_ACCOUNT_MARK = re.compile(rf"(?:(?:{_keywords(_ACCOUNT_WORDS)})\.?{_NOT_LETTER}|№)")
_ZONE_WORDS = {
    "пик": "T1",
    "день": "T1",
    "дн": "T1",
    "д": "T1",
    "ночь": "T2",
    "ноч": "T2",
    "н": "T2",
    "полупик": "T3",
    "полу-пик": "T3",
}
_ZONE_BY_WORD = {_fold(k): v for k, v in _ZONE_WORDS.items()}
# "Т1" may be glued to its number ("Т112345"); the spaced "Т 1" may not (else "Т 12345" = T1).
# "ТЗ" (Cyrillic Ze) is how "Т3" often arrives from phones.
_ZONE = re.compile(
    rf"(?:(?P<code>т(?:[123з]|\s+[123](?![0-9.])))|(?P<word>{_keywords(list(_ZONE_WORDS))})){_NOT_LETTER}[.\-]*"
)
# A comma between digits is decimal only when 1-3 digits follow and no further group is chained
# on: "12345,6" is one value, "1234567,12345" and "100,200,300" are lists.
_NUMBER_HEAD = r"(?P<sign>[-+]?)(?P<int>[0-9]+)"
_NUMBER = re.compile(
    rf"{_NUMBER_HEAD}(?:\.(?P<frac>[0-9]+)|,(?P<cfrac>[0-9]{{1,3}})(?![0-9]|[.,][0-9]))?\.?(?:{_UNIT})?"
)
_NUMBER_IN_CHAIN = re.compile(rf"{_NUMBER_HEAD}(?:\.(?P<frac>[0-9]+))?\.?(?:{_UNIT})?")
_SERIAL = re.compile(r"[A-Z0-9]+(?:-+[A-Z0-9]+)*-?")

_COMMANDS: dict[str, str] = {
    **dict.fromkeys(["помощь", "справка", "help", "/help", "?"], "help"),
    **dict.fromkeys(["да", "подтверждаю", "подтвердить", "yes"], "confirm"),
    **dict.fromkeys(["исправить", "нет", "no"], "correct"),
    **dict.fromkeys(["стоп", "stop", "/stop", "отписаться"], "stop"),
    **dict.fromkeys(["старт", "подписаться", "/remind"], "remind"),  # undoes "стоп"
    **dict.fromkeys(["/start"], "start"),
    **dict.fromkeys(["/history", "история"], "history"),
}
_COMMAND_BY_WORD = {_fold(k): v for k, v in _COMMANDS.items()}


def _normalise_decimal(int_part: str, frac: str) -> str:
    """'0012345' + '60' -> '12345.6': no leading zeros (bar '0'), no trailing fraction zeros."""
    whole = int_part.lstrip("0") or "0"
    frac = frac.rstrip("0")
    return f"{whole}.{frac}" if frac else whole


# --- failures --------------------------------------------------------------------------------


def _echo(token: str) -> str:
    """A short, SMS-safe quote of the offending token (BMP only: astral chars cost 2 units)."""
    clean = "".join(ch if ch.isprintable() and ord(ch) < 0x10000 and ch not in "«»" else "?" for ch in token)
    return clean if len(clean) <= 10 else clean[:9] + "…"


def _empty() -> ParseFailure:
    return ParseFailure(
        "empty",
        "Пустое сообщение. Пример: 1234567 12345 (ЛС показание)",
        "Empty message. Example: 1234567 12345 (account reading)",
    )


def _too_long() -> ParseFailure:
    return ParseFailure(
        "too_long",
        "Слишком длинно. Пришлите только: 1234567 12345 (ЛС показание)",
        "Too long. Send just: 1234567 12345 (account reading)",
    )


def _no_value() -> ParseFailure:
    return ParseFailure(
        "no_value",
        "Нет показания. Пример: 1234567 12345 (ЛС показание)",
        "No reading. Example: 1234567 12345 (account reading)",
    )


def _zone_without_value(label: str) -> ParseFailure:
    return ParseFailure(
        "no_value",
        f"После «{_echo(label)}» нужно число. Пример: 1234567 Т1 123 Т2 45",
        f"A number must follow '{label}'. Example: 1234567 T1 123 T2 45",
    )


def _account_without_number() -> ParseFailure:
    return ParseFailure(
        "no_value",
        "После «ЛС» нужен номер. Пример: ЛС 1234567 показания 12345",
        "An account number must follow 'ЛС'. Example: ЛС 1234567 12345",
    )


def _bad_number(token: str) -> ParseFailure:
    return ParseFailure(
        "bad_value",
        f"Не число: «{_echo(token)}». Пример: 1234567 12345,6",
        f"Not a number: '{token[:20]}'. Example: 1234567 12345.6",
    )


def _negative(token: str) -> ParseFailure:
    return ParseFailure(
        "bad_value",
        f"Показание без знака: «{_echo(token)}». Пример: 1234567 12345",
        f"A reading has no sign: '{token[:20]}'. Example: 1234567 12345",
    )


def _too_many_decimals(token: str) -> ParseFailure:
    return ParseFailure(
        "bad_value",
        "Не больше 3 знаков после запятой. Пример: 1234567 12345,6",
        f"At most 3 decimals ('{token[:20]}'). Example: 1234567 12345.6",
    )


def _bad_account(token: str) -> ParseFailure:
    return ParseFailure(
        "bad_value",
        f"ЛС «{_echo(token)}»: нужно 5-12 цифр. Пример: 1234567 12345",
        f"Account '{token[:20]}': 5-12 digits expected. Example: 1234567 12345",
    )


def _two_accounts() -> ParseFailure:
    return ParseFailure(
        "bad_value",
        "Укажите один ЛС. Пример: 1234567 12345 (ЛС показание)",
        "Give one account. Example: 1234567 12345 (account reading)",
    )


def _bad_serial(token: str) -> ParseFailure:
    return ParseFailure(
        "bad_value",
        f"Номер счётчика «{_echo(token)}»? Пример: 1234567#SN123#12345",
        f"Meter serial '{token[:20]}': letters, digits, dashes. Example: 1234567#SN123#12345",
    )


def _unknown_words(token: str) -> ParseFailure:
    return ParseFailure(
        "unknown_words",
        f"Непонятно: «{_echo(token)}». Пример: 1234567 12345 (ЛС показание)",
        f"Not understood: '{token[:20]}'. Example: 1234567 12345 (account reading)",
    )


def _too_many_values() -> ParseFailure:
    return ParseFailure(
        "too_many_values",
        "Не больше 3 показаний. Пример: 1234567 Т1 123 Т2 45 Т3 67",
        "At most 3 readings. Example: 1234567 T1 123 T2 45 T3 67",
    )


def _mixed_zones() -> ParseFailure:
    return ParseFailure(
        "mixed_zones",
        "Зону укажите у каждого числа или ни у одного: 1234567 Т1 123 Т2 45",
        "Label every value with its zone or none: 1234567 T1 123 T2 45",
    )


def _duplicate_zone(zone: str) -> ParseFailure:
    ru_zone = zone.replace("T", "Т")
    return ParseFailure(
        "duplicate_zone",
        f"Зона {ru_zone} указана дважды. Пример: 1234567 Т1 123 Т2 45",
        f"Zone {zone} is given twice. Example: 1234567 T1 123 T2 45",
    )


# --- scanning --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Mark:
    """'ЛС', '№', ...: the next number is the account."""


@dataclass(frozen=True, slots=True)
class _Zone:
    code: str  # "T1" | "T2" | "T3"
    text: str  # as typed (folded), for the reply


@dataclass(frozen=True, slots=True)
class _Num:
    int_part: str
    frac: str  # "" when there is no decimal part ("12345" and "12345." alike)
    raw: str  # as typed (folded), for the reply

    @property
    def value(self) -> str:
        return _normalise_decimal(self.int_part, self.frac)

    @property
    def could_be_account(self) -> bool:
        # an account is a plain integer; "1234567." (a full stop ending the sentence) still counts
        return not self.frac and ACCOUNT_DIGITS[0] <= len(self.int_part) <= ACCOUNT_DIGITS[1]


_Item = _Mark | _Zone | _Num


def _number(text: str, pos: int) -> re.Match[str] | None:
    """A number at pos; right after "<digits>," it is part of a list, so its comma is no decimal."""
    in_chain = pos >= 2 and text[pos - 1] == "," and text[pos - 2] in "0123456789"
    return (_NUMBER_IN_CHAIN if in_chain else _NUMBER).match(text, pos)


def _scan(text: str) -> list[_Item] | ParseFailure:
    """Folded text -> marks, zone labels and numbers; fillers dropped. Bad values beat unknown words."""
    items: list[_Item] = []
    unknown: str | None = None
    pos, end = 0, len(text)
    while True:
        if m := _SEP.match(text, pos):
            pos = m.end()
        if pos >= end:
            break
        if m := _FILLER.match(text, pos):
            pos = m.end()
        elif m := _ACCOUNT_MARK.match(text, pos):
            items.append(_Mark())
            pos = m.end()
        elif m := _ZONE.match(text, pos):
            code = m.group("code")
            zone = "T" + code[-1].replace("з", "3") if code else _ZONE_BY_WORD[m["word"]]
            items.append(_Zone(zone, code.upper() if code else m["word"]))
            pos = m.end()
        elif (m := _number(text, pos)) and (m.end() == end or _SEP.match(text, m.end())):
            token = m.group()
            if m["sign"] == "-":
                return _negative(token)
            if m["sign"]:
                return _bad_number(token)
            frac = m["frac"] or m.groupdict().get("cfrac") or ""
            if len(frac) > MAX_DECIMALS:
                return _too_many_decimals(token)
            items.append(_Num(m["int"], frac, token))
            pos = m.end()
        else:
            word = _WORD.match(text, pos)
            token = word.group() if word else text[pos]
            pos = word.end() if word else pos + 1
            if any(ch.isdigit() for ch in token):
                # "12a45", "1.2.3", "-100" glued to something: a value was meant but is garbled
                return _negative(token) if token.startswith("-") else _bad_number(token)
            unknown = unknown or token
    if unknown is not None:
        return _unknown_words(unknown)
    return items


def _values(items: list[_Item], account: str | None, may_infer_account: bool) -> ParsedReading | ParseFailure:
    """Pair zone labels with numbers, find the account, and check the set of values."""
    nums: list[tuple[str | None, _Num]] = []
    pending_zone: _Zone | None = None
    pending_mark = False
    for item in items:
        if isinstance(item, _Num):
            if pending_mark:
                if not item.could_be_account:
                    return _bad_account(item.raw)
                if account is not None and account != item.int_part:
                    return _two_accounts()
                account, pending_mark = item.int_part, False
            elif pending_zone is not None:
                nums.append((pending_zone.code, item))
                pending_zone = None
            else:
                nums.append((None, item))
        elif pending_zone is not None:
            return _zone_without_value(pending_zone.text)
        elif isinstance(item, _Zone):
            if pending_mark:
                return _account_without_number()
            pending_zone = item
        else:
            pending_mark = True
    if pending_zone is not None:
        return _zone_without_value(pending_zone.text)
    if pending_mark:
        return _account_without_number()

    # Only numbers, no "ЛС": the first is the account when it is a bare 5-12 digit integer and
    # something follows it; a lone number is always a reading.
    if account is None and may_infer_account and len(nums) >= 2:
        first_zone, first = nums[0]
        if first_zone is None and first.could_be_account:
            account = first.int_part
            nums = nums[1:]

    if not nums:
        return _no_value()
    zones = [zone for zone, _ in nums]
    if None in zones and any(zones):
        return _mixed_zones()
    seen: set[str] = set()
    for zone in zones:
        if zone is not None:
            if zone in seen:
                return _duplicate_zone(zone)
            seen.add(zone)
    if len(nums) > 3:
        return _too_many_values()
    if zones[0] is not None:
        nums.sort(key=lambda zn: zn[0] or "")  # labelled: canonical T1, T2, T3 order
    return ParsedReading(account, None, tuple((zone, num.value) for zone, num in nums))


def _hash_form(original: str, folded: str) -> ParsedReading | ParseFailure | None:
    """<account>#<serial>#<value>[#<value>...], or None when the text is not in that form."""
    parts = folded.split("#")
    raw_parts = original.split("#")
    if len(parts) < 3:  # "12345#" (IVR habit) and "1234567#12345": "#" is just a separator
        return None
    while len(parts) > 2 and not parts[-1].strip():  # trailing "#"s end the message
        parts.pop()

    account_items = _scan(parts[0])
    if isinstance(account_items, ParseFailure):
        return account_items
    nums = [item for item in account_items if isinstance(item, _Num)]
    if len(nums) != 1 or any(isinstance(item, _Zone) for item in account_items):
        return _bad_account(parts[0].strip())
    if not nums[0].could_be_account:
        return _bad_account(parts[0].strip())
    account = nums[0].int_part

    raw_serial = raw_parts[1] if len(raw_parts) == len(folded.split("#")) else parts[1]
    serial = raw_serial.strip().lstrip("№").strip().upper().translate(_CYRILLIC_TO_LATIN_UPPER)
    if not serial.isascii() or not _SERIAL.fullmatch(serial) or len(serial) > 40:
        return _bad_serial(raw_serial.strip())

    value_items = _scan(" ".join(parts[2:]))
    if isinstance(value_items, ParseFailure):
        return value_items
    result = _values(value_items, account, may_infer_account=False)
    if isinstance(result, ParseFailure):
        return result
    return ParsedReading(result.account, serial, result.values)


def _command(folded: str) -> Command | None:
    """The whole message as a command word: "Да!", "ПОМОЩЬ", "/start@MeterBot"."""
    word = folded.strip()
    if word and set(word) == {"?"}:
        return Command("help")
    word = word.strip(" \t\r\n.!?)")
    if word.startswith("/"):
        word = word.split("@", 1)[0]  # Telegram appends the bot name in group chats
    name = _COMMAND_BY_WORD.get(word)
    return Command(name) if name else None


# --- public API ------------------------------------------------------------------------------


def parse_message(text: str) -> ParsedReading | Command | ParseFailure:
    """Parse one resident message (SMS or chat) into a reading, a command or a failure; never raises."""
    if not isinstance(text, str):
        return _empty()
    if len(text) > MAX_MESSAGE_CHARS:  # before any regex: refusing must stay cheap
        return _too_long()
    folded = _fold(text)
    command = _command(folded)  # before the emptiness check: "?" alone is the help command
    if command is not None:
        return command
    if not _SEP.sub("", folded):
        return _empty()
    if "#" in folded:
        hashed = _hash_form(text, folded)
        if hashed is not None:
            return hashed
        folded = folded.replace("#", " ")
    items = _scan(folded)
    if isinstance(items, ParseFailure):
        return items
    return _values(items, None, may_infer_account=True)


_DTMF = re.compile(r"([0-9]+)(?:\*([0-9]*))?#?")


def parse_dtmf_number(digits: str) -> str | None:
    """IVR keypad digits to a normalised decimal ('12345*6#' -> '12345.6'); None when invalid."""
    if not isinstance(digits, str) or len(digits) > 40:
        return None
    m = _DTMF.fullmatch(digits.strip())
    if m is None:
        return None
    frac = m.group(2) or ""
    if len(frac) > MAX_DECIMALS:
        return None
    return _normalise_decimal(m.group(1), frac)
