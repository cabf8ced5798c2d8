"""The telephone menu as data, and its check against the contact-centre standard.

The standard the retailer keeps to (requirements 5.1.7-5.1.9) limits a voice menu to 4 levels of
information plus a fifth that connects an operator, at most 7 positions per level and at most
60 seconds of information per level; every level offers "back" (`*`) and "operator" (`0`). The
menu below declares what each level says (recorded prompts, numbers Asterisk speaks) and which
keys it takes; `check_menu` adds the recorded durations from the prompt catalogue
(`adapters/ivr/prompts.toml`, package data) and reports every breach. The gateway checks at start-up and refuses to
run a menu that breaks the standard; the call dialogue (adapters/ivr/call.py) plays exactly the
screens declared here.

Durations are counted for one pass through a level without errors, as long as it can be: the
greeting counts on the first level, a screen said once per zone counts three times, of screens
that are alternatives (`group`) the longest counts, numbers count at the longest Asterisk takes.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.resources import package_path

MAX_INFO_LEVELS = 4  # the fifth level is the operator
MAX_POSITIONS = 7
MAX_SECONDS_PER_LEVEL = 60.0
BACK, OPERATOR = "*", "0"
DTMF_KEYS = frozenset("0123456789*#")
# Package data (gateway/resources.py): found in the installation; `[ivr] prompts` replaces it.
DEFAULT_CATALOGUE = package_path("adapters.ivr", "prompts.toml")

# Asterisk's Russian numbers take about 0.6 s a word; these are the longest each slot can take.
WORD_SECONDS = 0.6
READING_SECONDS = 9 * WORD_SECONDS  # 99 999 999: nine words
FRACTION_SECONDS = 3 * WORD_SECONDS  # up to three decimals, digit by digit
RECEIPT_SECONDS = 12 * WORD_SECONDS  # a receipt below ten billion
ACCOUNT_SECONDS = 12 * WORD_SECONDS  # up to twelve digits, one by one
DAY_SECONDS = 2 * WORD_SECONDS  # "двадцать пять"
MAX_ZONES = 3


@dataclass(frozen=True, slots=True)
class Prompt:
    """A recorded prompt from the catalogue."""

    name: str


@dataclass(frozen=True, slots=True)
class OneOf:
    """One of several recorded prompts, chosen by the call (or none, when optional)."""

    slot: str
    names: tuple[str, ...]
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Say:
    """A number Asterisk speaks itself: SAY NUMBER, SAY DIGITS or SAY ALPHA."""

    slot: str
    how: Literal["number", "digits", "alpha"]
    seconds: float  # the longest it takes
    optional: bool = False


Part = Prompt | OneOf | Say


@dataclass(frozen=True, slots=True)
class Key:
    """A key the caller may press and what it does; `count` > 1 numbers a list (keys 1..count)."""

    key: str
    action: str
    count: int = 1

    def keys(self) -> list[str]:
        if self.count == 1:
            return [self.key]
        return [str(int(self.key) + i) for i in range(self.count)]


@dataclass(frozen=True, slots=True)
class Screen:
    """What the caller hears in one step of a level, and the keys taken after it.

    An `entry` screen takes digits ended by `#` (a whole entry of `*` or `0` is back or operator);
    a screen with keys takes one key; a screen without keys only speaks.
    """

    name: str
    parts: tuple[Part, ...]
    keys: tuple[Key, ...] = ()
    entry: bool = False
    repeat: int = 1  # said this many times on one pass at most (once per meter, once per zone)
    group: str | None = None  # screens of one group are alternatives: only the longest counts
    on_no_input: Literal["operator", "goodbye"] = "operator"  # after the last silent attempt

    def action(self, key: str) -> str | None:
        """What pressing `key` does here; None for a key this screen does not offer."""
        for k in self.keys:
            if key in k.keys():
                return k.action
        return None

    def escape_digits(self) -> str:
        """The keys that cut a prompt short: every key for an entry, the offered ones otherwise."""
        if self.entry:
            return "0123456789*#"
        return "".join(key for k in self.keys for key in k.keys())

    def prompt_names(self) -> list[str]:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, Prompt):
                out.append(part.name)
            elif isinstance(part, OneOf):
                out.extend(part.names)
        return out


@dataclass(frozen=True, slots=True)
class Level:
    name: str
    depth: int
    screens: tuple[Screen, ...]

    def screen(self, name: str) -> Screen:
        for s in self.screens:
            if s.name == name:
                return s
        raise KeyError(f"level {self.name} has no screen {name!r}")

    def positions(self) -> list[str]:
        """The distinct positions the level offers: each key, and a typed entry as one."""
        found: dict[str, None] = {}
        for s in self.screens:
            if s.entry:
                found["digits"] = None
            for k in s.keys:
                for key in k.keys():
                    found[key] = None
        return list(found)


@dataclass(frozen=True, slots=True)
class Menu:
    greeting: Screen  # said once at the start of a call, counted with the first level
    levels: tuple[Level, ...]
    operator: Screen  # the fifth level: said before the call returns to the dialplan's queue
    endings: tuple[Screen, ...]  # goodbye, technical failure

    def level(self, name: str) -> Level:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise KeyError(f"no level {name!r}")

    def screen(self, name: str) -> Screen:
        for s in (self.greeting, self.operator, *self.endings):
            if s.name == name:
                return s
        for lv in self.levels:
            for s in lv.screens:
                if s.name == name:
                    return s
        raise KeyError(f"no screen {name!r}")


# Why a reading was refused, said in plain words: reason code -> prompt. The prompts never name an
# earlier reading (the caller may not be the account holder); codes not listed say "reason_other".
REASON_PROMPTS: dict[str, str] = {
    "lower_than_previous": "reason_lower",
    "too_many_digits": "reason_digits",  # followed by the meter's digit count (SAY NUMBER)
    "impossible_consumption": "reason_impossible",
    "before_previous": "reason_before_previous",
    "future_reading": "reason_date",
    "too_old": "reason_date",
    "bad_value": "reason_format",
    "no_values": "reason_format",
    "zones_mismatch": "reason_format",
    "unknown_zone": "reason_format",
    "unknown_account": "reason_account",
    "no_account": "reason_account",
    "not_a_reading": "reason_format",
    "unknown_meter": "reason_meter",
    "meter_not_on_account": "reason_meter",
    "meter_ambiguous": "reason_meter",
    "unknown_meter_number": "reason_meter",  # a text's "2Э…" names a meter the account lacks
    "no_meter": "reason_meter",
    "unknown_sender": "reason_meter",
    "account_ambiguous": "reason_meter",
    "inactive_meter": "reason_inactive",
    "unverified_sender": "reason_account",
}
REASON_OTHER = "reason_other"
# Notes said with an accepted reading (severity INFO).
NOTE_PROMPTS: dict[str, str] = {"next_period": "reason_next_period", "rollover": "reason_rollover"}
ZONE_LABELS: dict[str, str] = {"T1": "label_T1", "T2": "label_T2", "T3": "label_T3"}
# What to ask for each zone: a two-rate meter has day and night, a three-rate one peak, night and
# half-peak (Т1, Т2, Т3 as Russian retailers print them on bills).
ZONE_PROMPTS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("T",): ("zone_T",),
    ("T1", "T2"): ("zone_T1_day", "zone_T2_night"),
    ("T1", "T2", "T3"): ("zone_T1_peak", "zone_T2_night", "zone_T3_halfpeak"),
}

_REASONS = tuple(sorted({*REASON_PROMPTS.values(), REASON_OTHER}))
_NOTES = tuple(sorted(set(NOTE_PROMPTS.values())))
_LABELS = tuple(ZONE_LABELS.values())
_ZONE_ASKS = tuple(dict.fromkeys(p for prompts in ZONE_PROMPTS.values() for p in prompts))
_BACK_OPERATOR = (Key(BACK, "back"), Key(OPERATOR, "operator"))
_FEEDBACK = ("no_input", "wrong_key", "not_understood")

MENU = Menu(
    greeting=Screen("greeting", (Prompt("welcome"), Prompt("recorded"), Prompt("keys_hint"))),
    levels=(
        Level(
            "main",
            1,
            (
                Screen(
                    "main_menu",
                    (Prompt("main_menu"),),
                    keys=(Key("1", "readings"), Key("2", "window"), *_BACK_OPERATOR),
                ),
                Screen(
                    "window",
                    (
                        Prompt("window_first"),
                        Say("first_day", "number", DAY_SECONDS),
                        Prompt("window_last"),
                        Say("last_day", "number", DAY_SECONDS),
                        Prompt("window_late"),
                    ),
                ),
                Screen("main_feedback", (OneOf("what", _FEEDBACK),)),
            ),
        ),
        Level(
            "identify",
            2,
            (
                Screen(
                    "caller_account",
                    (Prompt("account_is"), Say("account", "digits", ACCOUNT_SECONDS)),
                    group="who",
                ),
                Screen(
                    "ask_account", (Prompt("enter_account"),), keys=_BACK_OPERATOR, entry=True, group="who"
                ),
                Screen(
                    "meters", (Prompt("choose_meter"),), keys=(Key("1", "meter", count=4), *_BACK_OPERATOR)
                ),
                Screen(
                    "meter_option",
                    (
                        Prompt("meter_if"),
                        Say("serial_end", "alpha", 4 * WORD_SECONDS),
                        Prompt("press"),
                        Say("key", "digits", WORD_SECONDS),
                    ),
                    repeat=4,
                ),
                Screen(
                    "identify_feedback",
                    (OneOf("what", (*_FEEDBACK, "account_not_found", "no_meters", "many_meters")),),
                ),
            ),
        ),
        Level(
            "reading",
            3,
            (
                Screen(
                    "ask_zone",
                    (OneOf("zone", _ZONE_ASKS),),
                    keys=_BACK_OPERATOR,
                    entry=True,
                    repeat=MAX_ZONES,
                ),
                Screen("reading_keys", (Prompt("reading_keys"),)),
                Screen(
                    "readback",
                    (
                        Prompt("you_entered"),
                        Say("whole", "number", READING_SECONDS),
                        OneOf("comma", ("comma",), optional=True),
                        Say("fraction", "digits", FRACTION_SECONDS, optional=True),
                        Prompt("confirm_keys"),
                    ),
                    keys=(Key("1", "confirm"), Key("2", "reenter"), *_BACK_OPERATOR),
                    repeat=MAX_ZONES,
                ),
                Screen("reading_feedback", (OneOf("what", _FEEDBACK),)),
            ),
        ),
        Level(
            "verdict",
            4,
            (
                Screen(
                    "accepted",
                    (
                        OneOf("status", ("accepted", "flagged")),
                        OneOf("note1", _NOTES, optional=True),
                        OneOf("note2", _NOTES, optional=True),
                        Prompt("receipt"),
                        Say("receipt", "number", RECEIPT_SECONDS),
                        Prompt("after_accepted"),
                    ),
                    keys=(Key("1", "another"), *_BACK_OPERATOR),
                    group="verdict",
                    on_no_input="goodbye",
                ),
                Screen(
                    "rejected",
                    (
                        Prompt("rejected"),
                        OneOf("zone1", _LABELS, optional=True),
                        OneOf("reason1", _REASONS),
                        Say("number1", "number", 2 * WORD_SECONDS, optional=True),
                        OneOf("zone2", _LABELS, optional=True),
                        OneOf("reason2", _REASONS, optional=True),
                        Say("number2", "number", 2 * WORD_SECONDS, optional=True),
                        Prompt("after_rejected"),
                    ),
                    keys=(Key("2", "reenter"), *_BACK_OPERATOR),
                    group="verdict",
                ),
                Screen(
                    "unusual",
                    (Prompt("unusual"), Prompt("confirm_unusual")),
                    keys=(Key("1", "confirm"), Key("2", "reenter"), *_BACK_OPERATOR),
                    group="verdict",
                ),
                Screen("verdict_feedback", (OneOf("what", _FEEDBACK),)),
            ),
        ),
    ),
    operator=Screen("operator", (Prompt("operator"),)),
    endings=(Screen("goodbye", (Prompt("goodbye"),)), Screen("technical", (Prompt("technical"),))),
)


# --- the prompt catalogue --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromptEntry:
    name: str
    text: str  # Russian, as spoken
    duration_seconds: float


class CatalogueError(ValueError):
    """The prompt catalogue cannot be read or has a bad entry."""


def load_catalogue(path: str | Path | None = None) -> dict[str, PromptEntry]:
    """Read `prompts.toml`: `[[prompt]]` tables with name, text and duration_seconds."""
    p = Path(path) if path else DEFAULT_CATALOGUE
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(f"{p}: prompt catalogue not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{p}: not valid TOML: {exc}") from None
    entries: dict[str, PromptEntry] = {}
    for i, item in enumerate(data.get("prompt", [])):
        name, text, seconds = item.get("name"), item.get("text"), item.get("duration_seconds")
        where = f"{p}: prompt {i + 1}"
        if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
            raise CatalogueError(f"{where}: name must be letters, digits and _")
        if name in entries:
            raise CatalogueError(f"{where}: {name} is listed twice")
        if not isinstance(text, str) or not text.strip():
            raise CatalogueError(f"{where} ({name}): text is empty")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 60:
            raise CatalogueError(f"{where} ({name}): duration_seconds must be a number of seconds in (0, 60]")
        entries[name] = PromptEntry(name, text.strip(), float(seconds))
    if not entries:
        raise CatalogueError(f"{p}: no [[prompt]] entries")
    return entries


# --- the check -------------------------------------------------------------------------------


def part_seconds(part: Part, catalogue: dict[str, PromptEntry]) -> float:
    if isinstance(part, Prompt):
        return catalogue[part.name].duration_seconds if part.name in catalogue else 0.0
    if isinstance(part, OneOf):
        return max((catalogue[n].duration_seconds for n in part.names if n in catalogue), default=0.0)
    return part.seconds


def screen_seconds(screen: Screen, catalogue: dict[str, PromptEntry]) -> float:
    """How long one saying of the screen lasts at most."""
    return sum(part_seconds(p, catalogue) for p in screen.parts)


def level_seconds(level: Level, catalogue: dict[str, PromptEntry], greeting: Screen | None = None) -> float:
    """Information on one pass through the level, as long as it can be."""
    total = screen_seconds(greeting, catalogue) if greeting else 0.0
    groups: dict[str, float] = {}
    for s in level.screens:
        seconds = screen_seconds(s, catalogue) * s.repeat
        if s.group is None:
            total += seconds
        else:
            groups[s.group] = max(groups.get(s.group, 0.0), seconds)
    return round(total + sum(groups.values()), 2)


def check_menu(menu: Menu, catalogue: dict[str, PromptEntry]) -> list[str]:
    """Every way the menu breaks the standard or the catalogue; empty when it keeps to both."""
    problems: list[str] = []
    all_screens = [
        menu.greeting,
        menu.operator,
        *menu.endings,
        *(s for lv in menu.levels for s in lv.screens),
    ]
    used: set[str] = set()
    for s in all_screens:
        for name in s.prompt_names():
            used.add(name)
            if name not in catalogue:
                problems.append(f"screen {s.name}: prompt {name!r} is not in the catalogue")
        for k in s.keys:
            for key in k.keys():
                if key not in DTMF_KEYS:
                    problems.append(f"screen {s.name}: {key!r} is not a telephone key")
    for name in sorted(set(catalogue) - used):
        problems.append(f"prompt {name!r} is in the catalogue but no screen says it")
    for code, name in {**REASON_PROMPTS, **NOTE_PROMPTS}.items():
        if name not in catalogue:
            problems.append(f"reason {code}: prompt {name!r} is not in the catalogue")
    depths = sorted(lv.depth for lv in menu.levels)
    if depths != list(range(1, len(depths) + 1)):
        problems.append(f"levels must go 1, 2, 3... without gaps; they are {depths}")
    if len(menu.levels) > MAX_INFO_LEVELS:
        problems.append(
            f"{len(menu.levels)} levels of information: at most {MAX_INFO_LEVELS} plus the operator"
        )
    if menu.operator.keys:
        problems.append("the operator level takes no keys: the call goes back to the dialplan")
    for lv in menu.levels:
        positions = lv.positions()
        if len(positions) > MAX_POSITIONS:
            problems.append(
                f"level {lv.name}: {len(positions)} positions ({' '.join(positions)}), at most {MAX_POSITIONS}"
            )
        seconds = level_seconds(lv, catalogue, menu.greeting if lv.depth == 1 else None)
        if seconds > MAX_SECONDS_PER_LEVEL:
            problems.append(
                f"level {lv.name}: {seconds:.1f} s of information, at most {MAX_SECONDS_PER_LEVEL:.0f} s"
            )
        for s in lv.screens:
            if not (s.keys or s.entry):
                continue
            offered = {key for k in s.keys for key in k.keys()}
            if BACK not in offered or OPERATOR not in offered:
                problems.append(
                    f"screen {s.name}: every choice must offer {BACK} (back) and {OPERATOR} (operator)"
                )
            elif s.action(BACK) != "back" or s.action(OPERATOR) != "operator":
                problems.append(f"screen {s.name}: {BACK} must go back and {OPERATOR} to the operator")
    return problems
