"""Partners' file layouts as data: what a payment agent's, bank's or terminal's file looks like.

Each layout is a TOML declaration (adapters/partner_files/layouts/*.toml ships the common ones;
`[files] layouts_dir` adds the retailer's own, which replace shipped ones of the same id):

* `kind`: `csv`, `xlsx` or `dbf` (the forms Russian payment registries come in); `encoding`
  (`utf-8`, `cp1251`, `cp866`: CSV and a DBF whose header names no code page), `delimiter`
  (CSV), `skip_rows` (title lines above the header row), `sheet` (XLSX; default the first).
* `[columns]`: the header names of `account`, `meter`, `taken_at` (the date), `id` (the row's
  own id in the partner's system: a payment's number), and either `values` (1-3 columns whose
  filled cells are mapped onto the meter's zones by position, as the core does: one value is a
  single-rate meter's, two are T1 and T2) or `[columns.zones]` (`T = "ПОКАЗАНИЕ"`,
  `T1 = "ДЕНЬ"`, `T2 = "НОЧЬ"`: the filled ones must be the meter's zones).
  Names are matched ignoring case and surrounding spaces. Other columns are carried into the
  result file untouched.
* `date_formats`: strptime forms of the date column, tried in order (`%d.%m.%Y`); XLSX and DBF
  dates need none.
* `[result]`: the names of the columns the result file adds: the verdict, its reason, the receipt.
* `[[vectors]]`: test vectors: a header and rows (as the file has them) and what each row must
  become (`account`, `meter`, `values` by zone or `positional`, `taken_at`, `id`), or `refused` with
  the row problem's code. `meter-gateway layouts check` writes each vector as a real file of the
  layout's kind and reads it back (adapters/partner_files/checking.py).

Pure data and checks: loading reads the declarations and nothing else.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, datetime
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adapters.partner_files.config import FilesConfig

ZONES = ("T", "T1", "T2", "T3")
KINDS = ("csv", "xlsx", "dbf")
Cell = str | int | float | date | datetime | None
_DBF_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,9}$")


class LayoutError(ValueError):
    """A declaration that cannot be used, or a layout id that does not exist."""


class Columns(BaseModel):
    """Header names of the columns the gateway reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: str | None = Field(None, min_length=1, max_length=64)
    meter: str | None = Field(None, min_length=1, max_length=64)
    taken_at: str | None = Field(None, min_length=1, max_length=64)
    id: str | None = Field(None, min_length=1, max_length=64)
    values: list[str] = Field(default_factory=list, max_length=3)  # by position
    zones: dict[str, str] = Field(default_factory=dict)  # by zone

    @field_validator("zones")
    @classmethod
    def _known_zones(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - set(ZONES)
        if unknown:
            raise ValueError(f"unknown zones {sorted(unknown)} (T, T1, T2, T3)")
        return value

    @model_validator(mode="after")
    def _enough(self) -> Columns:
        if not (self.account or self.meter):
            raise ValueError("name `account` or `meter` (or both): a row must say whose meter it is")
        if bool(self.values) == bool(self.zones):
            raise ValueError(
                "name either `values` (1-3 columns, mapped onto the meter's zones by position) "
                "or `[columns.zones]` (a column per zone)"
            )
        return self

    def named(self) -> dict[str, str]:
        """What the gateway reads -> its header name (zones as `zone:T1`)."""
        found = {k: v for k in ("account", "meter", "taken_at", "id") if (v := getattr(self, k))}
        found.update({f"value:{i}": name for i, name in enumerate(self.values)})
        found.update({f"zone:{z}": name for z, name in self.zones.items()})
        return found


class ResultColumns(BaseModel):
    """The columns the result file adds to each row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verdict: str = Field("РЕЗУЛЬТАТ", min_length=1, max_length=64)
    reason: str = Field("ПРИЧИНА", min_length=1, max_length=64)
    receipt: str = Field("КВИТАНЦИЯ", min_length=1, max_length=64)


class Expected(BaseModel):
    """What one vector row must become: a reading, or a row refused with a problem's code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: str | None = None
    meter: str | None = None
    values: dict[str, str] = Field(default_factory=dict)  # by zone
    positional: list[str] = Field(default_factory=list)  # by position
    taken_at: date | datetime | None = None  # a date: noon that day in the retailer's zone
    id: str | None = None
    refused: str | None = None


class Vector(BaseModel):
    """A small file of the layout (its header and rows) and what each row must become."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: list[str] = Field(min_length=1, max_length=100)
    rows: list[list[Cell]] = Field(min_length=1, max_length=100)
    expect: list[Expected] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_each(self) -> Vector:
        if len(self.expect) != len(self.rows):
            raise ValueError(f"{len(self.rows)} rows but {len(self.expect)} expectations: one each")
        return self


class Layout(BaseModel):
    """One partner's file layout (see the module's opening)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["csv", "xlsx", "dbf"]
    encoding: Literal["utf-8", "cp1251", "cp866"] = "utf-8"
    delimiter: Literal[";", ",", "\t", "|"] = ";"
    skip_rows: int = Field(0, ge=0, le=50)
    sheet: str | None = Field(None, max_length=31)
    date_formats: list[str] = Field(default_factory=lambda: ["%d.%m.%Y", "%Y-%m-%d"], max_length=10)
    columns: Columns
    result: ResultColumns = ResultColumns()
    vectors: list[Vector] = Field(min_length=1)
    path: str | None = None  # where it was read from, for messages

    @field_validator("date_formats")
    @classmethod
    def _date_forms(cls, value: list[str]) -> list[str]:
        for form in value:
            if "%" not in form:
                raise ValueError(f"{form!r} is not a strptime form (e.g. %d.%m.%Y)")
        return value

    @model_validator(mode="after")
    def _kind_rules(self) -> Layout:
        if self.kind == "dbf":
            for name in (self.result.verdict, self.result.reason, self.result.receipt):
                if not _DBF_NAME.match(name):
                    raise ValueError(
                        f"result column {name!r}: a DBF field name is 1-10 Latin capitals, digits or _"
                    )
        if self.sheet and self.kind != "xlsx":
            raise ValueError("`sheet` is for xlsx layouts")
        return self

    @property
    def where(self) -> str:
        return self.path or self.id


def shipped() -> Traversable:
    """The layouts that ship inside the package (adapters/partner_files/layouts/)."""
    return files("adapters.partner_files").joinpath("layouts")


def parse_layout(where: str, text: str) -> Layout:
    """One declaration; LayoutError names the file and the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LayoutError(f"{where}: not valid TOML: {exc}") from None
    try:
        return Layout.model_validate({**data, "path": where})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors()
        )
        raise LayoutError(f"{where}: {problems}") from None


def load_layouts(directory: str | None = None) -> dict[str, Layout]:
    """Every declared layout by id: the shipped ones, then `directory`'s (same id: replaced)."""
    sources: list[Traversable | Path] = [shipped()]
    if directory:
        sources.append(Path(directory))
    found: dict[str, Layout] = {}
    for source in sources:
        if not source.is_dir():
            raise LayoutError(f"{source}: not a directory")
        seen: dict[str, str] = {}
        for item in sorted((d for d in source.iterdir() if d.name.endswith(".toml")), key=lambda d: d.name):
            layout = parse_layout(str(item), item.read_text(encoding="utf-8"))
            if layout.id in seen:
                raise LayoutError(f"{item}: id {layout.id!r} is also declared in {seen[layout.id]}")
            seen[layout.id] = str(item)
            found[layout.id] = layout
    return found


def kind_of(path: Path) -> str | None:
    """The layout kind a file's name suggests (.csv/.txt, .xlsx, .dbf), or None."""
    suffix = path.suffix.lower()
    return {".csv": "csv", ".txt": "csv", ".xlsx": "xlsx", ".dbf": "dbf"}.get(suffix)


def configured_layouts(config: FilesConfig) -> dict[str, Layout]:
    """The layouts `[files]` can use (shipped and its own), each partner's checked to exist;
    ConfigError names the key."""
    from gateway.config import ConfigError

    try:
        found = load_layouts(config.layouts_dir)
    except (LayoutError, OSError) as exc:
        raise ConfigError(f"files.layouts_dir: {exc}") from None
    for i, partner in enumerate(config.partners):
        if partner.layout not in found:
            raise ConfigError(
                f"files.partners[{i}].layout: unknown layout {partner.layout!r} (known: {', '.join(sorted(found))})"
            )
    return found
