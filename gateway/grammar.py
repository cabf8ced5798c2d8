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

What the enabled text formats declare (gateway/formats.py; `parse_message(text)` alone reads
the house grammar only) adds, with `formats`:

* Codes glued to values ("1Э1234", "1ЭД12345 1ЭН6789"): the zone from the code, the digit
  before it the account's meter number; codes of other meters (water: "1Г", "1Х") are refused
  as "not_electricity" when nothing else is given and otherwise listed in `ignored`.
* A trailing e-mail address ("1000001 1234 ivan@mail.ru"): kept as `contact`, never refused.
* A number between the account and the values ("1000001 45871234 1234"): besides the values by
  position, the reading with that number as the meter's serial is offered in `alternatives`
  (or is the reading, when only it parses); the core keeps the one the registry supports.
* The decimal policy of the format governing the reading's shape: "cut" drops the fraction
  (`cut` is set so the sender is told).
* The enabled format's example in the refusals that show one.

Failure codes: gateway/grammar_failures.py. Every message_ru fits one Cyrillic (UCS-2) SMS: at
most 70 UTF-16 code units. (About 690 lines, a tenth of them this list: the scanner, the pairing
of labels and values and the two message forms share the token types, so they stay together.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

from gateway import grammar_failures as fail
from gateway.formats import HOUSE, FormatSet
from gateway.grammar_failures import FAILURE_CODES, ParseFailure

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


@dataclass(frozen=True, slots=True)
class ParsedReading:
    """What a reading message says: maybe an account, maybe a serial, and 1-3 values."""

    account: str | None  # digits of the лицевой счёт as typed (leading zeros kept), None if absent
    meter_serial: str | None  # only from the <account>#<serial>#<value> form
    values: tuple[tuple[str | None, str], ...]  # (zone "T1"/"T2"/"T3" or None = by position, value)
    meter_number: int | None = None  # "2Э": the account's second meter (formats with numbered codes)
    contact: str | None = None  # a trailing e-mail address, as typed
    cut: bool = False  # the governing format's "cut" policy dropped decimals: the sender is told
    ignored: tuple[str, ...] = ()  # codes of what is not taken here (water), as typed
    # Other readings of the same text (a number that may be the meter's serial): the registry
    # chooses; `unclear` is the part they disagree on, quoted when it cannot.
    alternatives: tuple[ParsedReading, ...] = ()
    unclear: str = ""

    def readings(self) -> tuple[ParsedReading, ...]:
        """This reading and its alternatives, in order of preference."""
        return (self, *self.alternatives)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ParsedReading:
        """Back from its JSON form (orjson writes the dataclass as an object): a door that keeps
        a parsed text in a conversation's state hands it on without parsing it again."""
        return cls(
            data["account"],
            data["meter_serial"],
            tuple((zone, str(value)) for zone, value in data["values"]),
            data.get("meter_number"),
            data.get("contact"),
            bool(data.get("cut")),
            tuple(data.get("ignored") or ()),
            tuple(cls.from_data(alt) for alt in data.get("alternatives") or ()),
            str(data.get("unclear") or ""),
        )


@dataclass(frozen=True, slots=True)
class Command:
    """A whole-message command word."""

    name: str  # "help" | "confirm" | "correct" | "stop" | "start" | "history"


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

    @property
    def could_be_serial(self) -> bool:
        # meter numbers printed on bills: 5-20 digits, no fraction
        return not self.frac and 5 <= len(self.int_part) <= 20


@dataclass(frozen=True, slots=True)
class _Coded:
    """A value glued to a format's code: "1ЭД12345"."""

    zone: str | None  # None for a single-rate code: by position, like a bare value
    meter_number: int | None
    num: _Num


@dataclass(frozen=True, slots=True)
class _Other:
    """A code of something not taken here (water), with or without its value."""

    code: str  # as typed (upper case), for the reply
    what: str


_Item = _Mark | _Zone | _Num | _Coded | _Other


@dataclass(frozen=True, slots=True)
class _Codes:
    """The enabled formats' codes as one regex (built once per set of codes)."""

    pattern: re.Pattern[str] | None
    zones: dict[str, str]  # folded code -> zone
    other: dict[str, str]  # folded code -> what it measures


@lru_cache(maxsize=16)
def _codes_of(
    codes: tuple[tuple[str, str], ...], other: tuple[tuple[str, str], ...], numbered: bool
) -> _Codes:
    zones = {_fold(code): zone for code, zone in codes}
    others = {_fold(code): what for code, what in other}
    if not zones and not others:
        return _Codes(None, {}, {})
    number = "(?P<n>[1-9])?" if numbered else ""
    words = "|".join(re.escape(c) for c in sorted({*zones, *others}, key=len, reverse=True))
    return _Codes(re.compile(rf"{number}(?P<code>{words})(?=[0-9]|[{_SEP_CHARS}]|$)"), zones, others)


def _codes(formats: FormatSet) -> _Codes:
    return _codes_of(
        tuple(sorted(formats.codes.items())),
        tuple(sorted(formats.other_codes.items())),
        formats.meter_numbers,
    )


def _number(text: str, pos: int) -> re.Match[str] | None:
    """A number at pos; right after "<digits>," it is part of a list, so its comma is no decimal."""
    in_chain = pos >= 2 and text[pos - 1] == "," and text[pos - 2] in "0123456789"
    return (_NUMBER_IN_CHAIN if in_chain else _NUMBER).match(text, pos)


def _value_at(text: str, pos: int) -> re.Match[str] | None:
    """A whole number token at pos (ending at a separator or the end of the text)."""
    m = _number(text, pos)
    return m if m and (m.end() == len(text) or _SEP.match(text, m.end())) else None


def _listed_value_at(text: str, pos: int) -> re.Match[str] | None:
    """A number at pos that a comma ends, as in a list."""
    m = _NUMBER_IN_CHAIN.match(text, pos)
    return m if m and m.end() < len(text) and text[m.end()] == "," else None


def _checked(m: re.Match[str]) -> _Num | ParseFailure:
    token = m.group()
    if m["sign"] == "-":
        return fail.negative(token)
    if m["sign"]:
        return fail.bad_number(token)
    frac = m["frac"] or m.groupdict().get("cfrac") or ""
    if len(frac) > MAX_DECIMALS:
        return fail.too_many_decimals(token)
    return _Num(m["int"], frac, token)


def _coded(text: str, pos: int, codes: _Codes) -> tuple[_Coded | _Other, int] | ParseFailure | None:
    """A format's code at pos with its value ("1эд12345"), or None when there is none."""
    if codes.pattern is None or not (m := codes.pattern.match(text, pos)):
        return None
    code = m["code"]
    typed = (m.groupdict().get("n") or "") + code.upper()
    # "1ЭД12345,1ЭН6789": a comma before the next code separates, it is no decimal comma
    value = _value_at(text, m.end()) or _listed_value_at(text, m.end())
    if code in codes.other:
        return _Other(typed, codes.other[code]), value.end() if value else m.end()
    if value is None:
        return None  # "Э" followed by something else: not this format's code
    num = _checked(value)
    if isinstance(num, ParseFailure):
        return num
    number = int(m["n"]) if m.groupdict().get("n") else None
    zone = codes.zones[code]
    return _Coded(None if zone == "T" else zone, number, num), value.end()


def _scan(text: str, codes: _Codes, example: str) -> list[_Item] | ParseFailure:
    """Folded text -> marks, zone labels, numbers and coded values; fillers dropped. Bad values
    beat unknown words."""
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
        elif coded := _coded(text, pos, codes):
            if isinstance(coded, ParseFailure):
                return coded
            items.append(coded[0])
            pos = coded[1]
        elif m := _ZONE.match(text, pos):
            code = m.group("code")
            zone = "T" + code[-1].replace("з", "3") if code else _ZONE_BY_WORD[m["word"]]
            items.append(_Zone(zone, code.upper() if code else m["word"]))
            pos = m.end()
        elif m := _value_at(text, pos):
            num = _checked(m)
            if isinstance(num, ParseFailure):
                return num
            items.append(num)
            pos = m.end()
        else:
            word = _WORD.match(text, pos)
            token = word.group() if word else text[pos]
            pos = word.end() if word else pos + 1
            if any(ch.isdigit() for ch in token):
                # "12a45", "1.2.3", "-100" glued to something: a value was meant but is garbled
                return fail.negative(token) if token.startswith("-") else fail.bad_number(token)
            unknown = unknown or token
    if unknown is not None:
        return fail.unknown_words(unknown, example)
    return items


# --- readings --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Text:
    """What the whole message tells every reading made of it."""

    formats: FormatSet
    hashed: bool  # the <account>#<serial>#<value> form
    contact: str | None  # a trailing e-mail address


def _reading(
    ctx: _Text,
    account: str | None,
    serial: str | None,
    nums: list[tuple[str | None, _Num]],
    coded: bool,
    meter_number: int | None,
    ignored: tuple[str, ...],
) -> ParsedReading | ParseFailure:
    """Check one set of values and apply the governing format's decimal policy."""
    if not nums:
        return fail.no_value(ctx.formats.example)
    zones = [zone for zone, _ in nums]
    if None in zones and any(zones):
        return fail.mixed_zones()
    seen: set[str] = set()
    for zone in zones:
        if zone is not None:
            if zone in seen:
                return fail.duplicate_zone(zone)
            seen.add(zone)
    if len(nums) > 3:
        return fail.too_many_values()
    if zones[0] is not None:
        nums = sorted(nums, key=lambda zn: zn[0] or "")  # labelled: canonical T1, T2, T3 order
    values = tuple((zone, num.value) for zone, num in nums)
    governing = ctx.formats.governing(_shape(ctx, account, serial, coded, zones[0] is not None), account)
    cut = False
    if governing is not None and governing.decimals == "cut" and any(num.frac.strip("0") for _, num in nums):
        values = tuple((zone, str(int(Decimal(value)))) for zone, value in values)
        cut = True
    return ParsedReading(account, serial, values, meter_number, ctx.contact, cut, ignored)


def _shape(ctx: _Text, account: str | None, serial: str | None, coded: bool, zoned: bool) -> str:
    """The reading's shape in the formats' vocabulary (gateway/formats.py)."""
    if ctx.hashed:
        return "account#serial#values"
    parts = ["account"] if account else []
    parts += ["serial"] if serial else []
    parts.append("coded" if coded else "zoned" if zoned else "values")
    parts += ["email"] if ctx.contact else []
    return " ".join(parts)


def _values(
    ctx: _Text, items: list[_Item], account: str | None, serial: str | None = None
) -> ParsedReading | ParseFailure:
    """Pair zone labels with numbers, find the account, and check the set of values."""
    nums: list[tuple[str | None, _Num]] = []
    pending_zone: _Zone | None = None
    pending_mark = False
    coded_at: set[int] = set()  # indexes in nums of coded values
    meter_numbers: set[int | None] = set()
    others: list[_Other] = []
    example = ctx.formats.example
    for item in items:
        if isinstance(item, _Num):
            if pending_mark:
                if not item.could_be_account:
                    return fail.bad_account(item.raw)
                if account is not None and account != item.int_part:
                    return fail.two_accounts(example)
                account, pending_mark = item.int_part, False
            elif pending_zone is not None:
                nums.append((pending_zone.code, item))
                pending_zone = None
            else:
                nums.append((None, item))
        elif pending_zone is not None:
            return fail.zone_without_value(pending_zone.text)
        elif isinstance(item, _Zone):
            if pending_mark:
                return fail.account_without_number()
            pending_zone = item
        elif isinstance(item, _Coded):
            coded_at.add(len(nums))
            meter_numbers.add(item.meter_number)
            nums.append((item.zone, item.num))
        elif isinstance(item, _Other):
            others.append(item)
        else:
            pending_mark = True
    if pending_zone is not None:
        return fail.zone_without_value(pending_zone.text)
    if pending_mark:
        return fail.account_without_number()

    # Only numbers, no "ЛС": the first is the account when it is a bare 5-12 digit integer and
    # something follows it (a value or a code of something else); a lone number is a reading.
    if account is None and serial is None and nums and len(nums) + len(others) >= 2 and 0 not in coded_at:
        first_zone, first = nums[0]
        if first_zone is None and first.could_be_account:
            account = first.int_part
            nums = nums[1:]
            coded_at = {i - 1 for i in coded_at}

    if others and not nums:
        return fail.not_electricity(others[0].code, others[0].what)
    if len(meter_numbers) > 1:
        return fail.several_meters()
    number = next(iter(meter_numbers), None)
    ignored = tuple(o.code for o in others)
    reading = _reading(ctx, account, serial, nums, bool(coded_at), number, ignored)

    # "<account> <number> <values>": the number may be the meter's serial (a format declares it).
    if not (ctx.formats.serial_between and account and serial is None and len(nums) >= 2):
        return reading
    first_zone, first = nums[0]
    if first_zone is not None or 0 in coded_at or not first.could_be_serial:
        return reading
    as_serial = _reading(ctx, account, first.int_part, nums[1:], bool(coded_at), number, ignored)
    if isinstance(as_serial, ParseFailure):
        return reading
    if isinstance(reading, ParseFailure):
        return as_serial
    return replace(reading, alternatives=(as_serial,), unclear=first.raw)


def _hash_form(ctx: _Text, original: str, folded: str, codes: _Codes) -> ParsedReading | ParseFailure | None:
    """<account>#<serial>#<value>[#<value>...], or None when the text is not in that form."""
    parts = folded.split("#")
    raw_parts = original.split("#")
    if len(parts) < 3:  # "12345#" (IVR habit) and "1234567#12345": "#" is just a separator
        return None
    while len(parts) > 2 and not parts[-1].strip():  # trailing "#"s end the message
        parts.pop()

    example = ctx.formats.example
    account_items = _scan(parts[0], codes, example)
    if isinstance(account_items, ParseFailure):
        return account_items
    nums = [item for item in account_items if isinstance(item, _Num)]
    if len(nums) != 1 or len(account_items) != sum(isinstance(i, _Num | _Mark) for i in account_items):
        return fail.bad_account(parts[0].strip())
    if not nums[0].could_be_account:
        return fail.bad_account(parts[0].strip())
    account = nums[0].int_part

    raw_serial = raw_parts[1] if len(raw_parts) == len(folded.split("#")) else parts[1]
    serial = raw_serial.strip().lstrip("№").strip().upper().translate(_CYRILLIC_TO_LATIN_UPPER)
    if not serial.isascii() or not _SERIAL.fullmatch(serial) or len(serial) > 40:
        return fail.bad_serial(raw_serial.strip())

    value_items = _scan(" ".join(parts[2:]), codes, example)
    if isinstance(value_items, ParseFailure):
        return value_items
    return _values(replace(ctx, hashed=True), value_items, account, serial)


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


# A trailing e-mail address (Газпром энергосбыт Брянск: "ЛС показание e-mail"), as typed.
_EMAIL_TAIL = re.compile(r"(?:^|(?<=[\s,;]))([^\s@,;]{1,64}@[^\s@,;]{1,190}\.[^\s@,;.]{2,24})[\s.,;!]*$")


# --- public API ------------------------------------------------------------------------------


def parse_message(text: str, formats: FormatSet = HOUSE) -> ParsedReading | Command | ParseFailure:
    """Parse one resident message (SMS or chat) into a reading, a command or a failure; never
    raises. `formats`: the enabled text formats (gateway/formats.py); the house grammar alone
    when not given."""
    example = formats.example
    if not isinstance(text, str):
        return fail.empty(example)
    if len(text) > MAX_MESSAGE_CHARS:  # before any regex: refusing must stay cheap
        return fail.too_long(example)
    folded = _fold(text)
    command = _command(folded)  # before the emptiness check: "?" alone is the help command
    if command is not None:
        return command
    contact = None
    if formats.trailing_email and "@" in text and (m := _EMAIL_TAIL.search(text)):
        contact, text = m.group(1), text[: m.start(1)]
        folded = _fold(text)
    if not _SEP.sub("", folded):
        return fail.empty(example)
    ctx = _Text(formats, False, contact)
    codes = _codes(formats)
    if "#" in folded:
        hashed = _hash_form(ctx, text, folded, codes)
        if hashed is not None:
            return hashed
        folded = folded.replace("#", " ")
    items = _scan(folded, codes, example)
    if isinstance(items, ParseFailure):
        return items
    return _values(ctx, items, None)


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
