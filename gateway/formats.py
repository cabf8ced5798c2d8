"""Residents' text formats as data: the SMS formats retailers print on their bills.

Each format is a small TOML declaration (gateway/text_formats/*.toml ships the house format and
six retailers'; `[text_formats] dir` adds an operator's own, which replace shipped ones of the
same id) with its test vectors. `[text_formats] enabled` lists those a retailer's residents
were taught; the grammar (gateway/grammar.py) stays one and reads every text through the union
of what the enabled formats declare:

* `layouts`: the shapes of message the format publishes, in a small closed vocabulary:
  `account`, `serial` (the meter's number), `values` (1-3 bare numbers by position), `zoned`
  (numbers with zone words, `Т1`, `день`), `coded` (numbers glued to the format's codes, `1Э12345`),
  `email` (a trailing e-mail address), joined by spaces, or `account#serial#values`; `[x]` is
  optional; `*` is everything the house grammar reads. A `serial` between the account and the
  values, `coded` values and a trailing `email` are read only when an enabled format declares
  them.
* `codes`: value codes and the zone each one means (`Э` = single rate, `ЭД` = T1, `ЭН` = T2),
  with `meter_number = true` when a digit before the code numbers the account's meters (`2Э`);
  `other_codes`: codes of what this gateway does not take (water), named in the reply.
* `decimals`: `keep` (up to three decimals, what any meter shows) or `cut` ("digits before the
  comma only": the fraction is dropped and the sender told so).
* `example`: what refusals show. The first enabled format's example is the one shown.

The format that governs a reading (its decimal policy) is the first enabled one that declares
the reading's exact shape, else the first enabled `*` format. Pure data and checks: no I/O
beyond reading the declarations; the vectors run in gateway/formats_check.py.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "DEFAULT_ENABLED",
    "FormatError",
    "FormatSet",
    "TextFormat",
    "Vector",
    "format_set",
    "load_formats",
]

# Shipped and on by default; `sakhalin` is shipped but off: its "digits before the comma only"
# would cut the decimals of the house `account#serial#value` form, so its retailer turns it on.
DEFAULT_ENABLED = ("standard", "sverdlovsk", "pskov", "dalenergosbyt", "energosbyt-plus", "bryansk")
LAYOUT_WORDS = frozenset({"account", "serial", "values", "zoned", "coded", "email"})
ANY_SHAPE = "*"
MAX_EXAMPLE_UNITS = 30  # the example goes into refusals that must fit one Cyrillic SMS (70 units)
_ZONES = frozenset({"T", "T1", "T2", "T3"})
_CODE = re.compile(r"[^\W\d_]{1,4}")  # letters only: a digit before a code numbers the meter


class FormatError(ValueError):
    """A declaration that cannot be used, or an enabled format that does not exist."""


class Vector(BaseModel):
    """One test vector: a text and what the grammar must make of it under this format alone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(max_length=500)
    account: str | None = None
    serial: str | None = None
    values: list[str] = Field(default_factory=list)  # bare values, by position
    zones: dict[str, str] = Field(default_factory=dict)  # labelled values, zone -> value
    meter_number: int | None = None
    contact: str | None = None
    cut: bool = False
    ignored: list[str] = Field(default_factory=list)  # codes of what is not taken (water)
    refused: str | None = None  # the failure code expected instead of a reading

    @field_validator("zones")
    @classmethod
    def _known_zones(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - _ZONES
        if unknown:
            raise ValueError(f"unknown zones {sorted(unknown)} (T, T1, T2, T3)")
        return value


class TextFormat(BaseModel):
    """One published format (see the module's opening)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    retailer: str = Field(max_length=100)
    source: str = Field("", max_length=300)  # where the retailer publishes it
    layouts: list[str] = Field(min_length=1, max_length=20)
    example: str = Field(min_length=1)
    decimals: Literal["keep", "cut"] = "keep"
    account_digits: tuple[int, int] = (5, 12)
    codes: dict[str, str] = Field(default_factory=dict)
    meter_number: bool = False
    other_codes: dict[str, str] = Field(default_factory=dict)  # code -> what it measures
    vectors: list[Vector] = Field(min_length=1)
    path: str | None = None  # where it was read from, for messages

    @field_validator("layouts")
    @classmethod
    def _layouts(cls, value: list[str]) -> list[str]:
        for layout in value:
            shapes(layout)  # raises ValueError naming the bad word
        return value

    @field_validator("example")
    @classmethod
    def _short_example(cls, value: str) -> str:
        if len(value.encode("utf-16-le")) // 2 > MAX_EXAMPLE_UNITS:
            raise ValueError(f"at most {MAX_EXAMPLE_UNITS} characters: refusals quote it in one SMS")
        return value

    @field_validator("account_digits")
    @classmethod
    def _digits(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 5 <= value[0] <= value[1] <= 12:
            raise ValueError("must be [least, most] within 5-12 (the grammar's account numbers)")
        return value

    @field_validator("codes", "other_codes")
    @classmethod
    def _codes(cls, value: dict[str, str], info: Any) -> dict[str, str]:
        for code, meaning in value.items():
            if not _CODE.fullmatch(code):
                raise ValueError(f"code {code!r}: one to four letters")
            if info.field_name == "codes" and meaning not in _ZONES:
                raise ValueError(f"code {code!r}: zone {meaning!r} is not one of T, T1, T2, T3")
            if info.field_name == "other_codes" and not 1 <= len(meaning) <= 20:
                raise ValueError(
                    f"code {code!r}: say what it measures in 1-20 characters (quoted in one SMS)"
                )
        return value

    @property
    def shapes(self) -> frozenset[str]:
        return frozenset(s for layout in self.layouts for s in shapes(layout))


def shapes(layout: str) -> list[str]:
    """'account values [email]' -> ['account values', 'account values email']; '*' stays."""
    layout = " ".join(layout.split())
    if layout == ANY_SHAPE:
        return [ANY_SHAPE]
    if layout == "account#serial#values":
        return [layout]
    words = layout.split(" ")
    options: list[list[str]] = []
    for word in words:
        optional = word.startswith("[") and word.endswith("]")
        bare = word.strip("[]")
        if bare not in LAYOUT_WORDS:
            raise ValueError(
                f"layout {layout!r}: unknown part {word!r} (known: {', '.join(sorted(LAYOUT_WORDS))}, '*', 'account#serial#values')"
            )
        options.append(["", bare] if optional else [bare])
    return [" ".join(w for w in combo if w) for combo in itertools.product(*options)]


@dataclass(frozen=True)
class FormatSet:
    """The enabled formats, merged into what the grammar needs to know."""

    formats: tuple[TextFormat, ...] = ()
    codes: dict[str, str] = field(default_factory=dict)  # folded by the grammar
    other_codes: dict[str, str] = field(default_factory=dict)
    serial_between: bool = False  # "account serial values" is declared
    trailing_email: bool = False

    @classmethod
    def of(cls, formats: tuple[TextFormat, ...]) -> FormatSet:
        codes: dict[str, str] = {}
        other: dict[str, str] = {}
        for f in formats:
            if not any("coded" in s for s in f.shapes):
                continue
            for code, zone in f.codes.items():
                if codes.setdefault(code.upper(), zone) != zone:
                    raise FormatError(
                        f"{f.id}: code {code!r} means {zone}, another enabled format says {codes[code.upper()]}"
                    )
            other.update({c.upper(): m for c, m in f.other_codes.items()})
        all_shapes = {s for f in formats for s in f.shapes}
        return cls(
            formats=formats,
            codes=codes,
            other_codes=other,
            serial_between=any(s.startswith("account serial") for s in all_shapes),
            trailing_email=any(s.endswith("email") for s in all_shapes),
        )

    @property
    def example(self) -> str:
        """The example refusals show: the first enabled format's."""
        return self.formats[0].example if self.formats else HOUSE_EXAMPLE

    @property
    def meter_numbers(self) -> bool:
        return any(f.meter_number for f in self.formats if f.codes)

    def governing(self, shape: str, account: str | None) -> TextFormat | None:
        """The format whose policy applies to a reading of this shape (see the module's opening)."""
        for f in self.formats:
            low, high = f.account_digits
            if shape in f.shapes and (account is None or low <= len(account) <= high):
                return f
        return next((f for f in self.formats if ANY_SHAPE in f.shapes), None)


HOUSE_EXAMPLE = "1234567 12345 (ЛС показание)"
HOUSE = FormatSet()  # the house grammar alone: what `parse_message(text)` reads


def shipped() -> Traversable:
    """The declarations that ship inside the package (gateway/text_formats/)."""
    return files("gateway").joinpath("text_formats")


def _declarations(directory: Traversable | Path) -> list[tuple[str, str]]:
    if not directory.is_dir():
        raise FormatError(f"{directory}: not a directory")
    found = sorted((d for d in directory.iterdir() if d.name.endswith(".toml")), key=lambda d: d.name)
    return [(str(d), d.read_text(encoding="utf-8")) for d in found]


def parse_declaration(where: str, text: str) -> TextFormat:
    """One declaration; FormatError names the file and the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FormatError(f"{where}: not valid TOML: {exc}") from None
    try:
        return TextFormat.model_validate({**data, "path": where})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors()
        )
        raise FormatError(f"{where}: {problems}") from None


def load_formats(directory: str | None = None) -> dict[str, TextFormat]:
    """Every declared format by id: the shipped ones, then `directory`'s (same id: replaced)."""
    sources: list[Traversable | Path] = [shipped()]
    if directory:
        sources.append(Path(directory))
    found: dict[str, TextFormat] = {}
    for source in sources:
        seen: dict[str, str] = {}
        for where, text in _declarations(source):
            fmt = parse_declaration(where, text)
            if fmt.id in seen:
                raise FormatError(f"{where}: id {fmt.id!r} is also declared in {seen[fmt.id]}")
            seen[fmt.id] = where
            found[fmt.id] = fmt
    return found


@lru_cache(maxsize=8)
def format_set(enabled: tuple[str, ...], directory: str | None = None) -> FormatSet:
    """The enabled formats, in order, merged (read once per process and configuration)."""
    known = load_formats(directory)
    missing = [name for name in enabled if name not in known]
    if missing:
        raise FormatError(f"unknown formats {', '.join(missing)} (declared: {', '.join(sorted(known))})")
    return FormatSet.of(tuple(known[name] for name in enabled))
