"""One row of a partner's file -> what the intake gets: the account, meter, values, date and the
row's message id; or the row's problem when the layout cannot read it.

Values go to the core as the text the file holds (a number cell as its shortest decimal form),
so "12 345,6" and "abc" get the core's own verdicts (`bad_value` and the rest). What only the
layout can judge is decided here: a date that is none of the declared forms, no account and no
meter, a cell too long to be an identifier. A row with every cell empty is no row at all
(spreadsheets end with such rows) and is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from adapters.partner_files.layouts import Cell, Layout
from adapters.partner_files.readers import FileProblem

LONGEST = {"account": 32, "meter": 64, "id": 64}
_NAMES_RU = {"account": "л/с", "meter": "счётчик", "id": "номер строки у партнёра"}


@dataclass(frozen=True, slots=True)
class RowReading:
    """A row the layout read: what the intake is handed."""

    line: int
    account: str | None
    meter: str | None
    values: dict[str, str]  # by zone
    positional: tuple[
        str, ...
    ]  # the `values` columns' filled cells, mapped by the core onto the meter's zones
    taken_at: datetime | None  # None: the moment of import
    row_id: str | None
    raw: dict[str, object] = field(default_factory=dict)  # what was read, stored as the raw message


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A row the layout cannot read: told in the result file, never decided."""

    line: int
    code: str
    message_ru: str
    message_en: str


class ColumnIndex:
    """Where each column the layout reads sits in this file's header."""

    def __init__(self, layout: Layout, header: list[str]) -> None:
        positions = {_key(h): i for i, h in reversed(list(enumerate(header)))}
        self.layout = layout
        self.at: dict[str, int] = {}
        missing = []
        for what, name in layout.columns.named().items():
            if _key(name) in positions:
                self.at[what] = positions[_key(name)]
            else:
                missing.append(name)
        if missing:
            raise FileProblem(
                f"В файле нет столбцов {', '.join(missing)} (формат {layout.id})",
                f"columns missing for layout {layout.id}: {', '.join(missing)}",
            )

    def cell(self, cells: list[Cell], what: str) -> Cell:
        i = self.at.get(what)
        return cells[i] if i is not None and i < len(cells) else None


def fits(layout: Layout, header: list[str]) -> bool:
    """Whether a file with this header has every column the layout reads."""
    keys = {_key(h) for h in header}
    return all(_key(name) in keys for name in layout.columns.named().values())


def _key(name: str) -> str:
    return " ".join(str(name).split()).casefold()


def text_of(cell: Cell) -> str:
    """A cell as the text a resident would have written: numbers in their shortest decimal form."""
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return str(cell)
    if isinstance(cell, int):
        return str(cell)
    if isinstance(cell, float):
        try:
            text = format(Decimal(repr(cell)).normalize(), "f")
        except InvalidOperation:
            return repr(cell)
        return text
    if isinstance(cell, datetime):
        return cell.isoformat(sep=" ")
    if isinstance(cell, date):
        return cell.isoformat()
    return str(cell).strip()


def read_row(
    index: ColumnIndex, cells: list[Cell], line: int, tz: ZoneInfo, now: datetime
) -> RowReading | RowProblem | None:
    """The row as the intake's input, its problem, or None for a row with nothing in it."""
    if all(text_of(c) == "" for c in cells):
        return None
    layout = index.layout
    found: dict[str, str] = {}
    for what in ("account", "meter", "id"):
        value = text_of(index.cell(cells, what))
        if len(value) > LONGEST[what]:
            return RowProblem(
                line,
                "too_long",
                f"Слишком длинное значение в столбце «{layout.columns.named()[what]}» ({_NAMES_RU[what]})",
                f"{what} longer than {LONGEST[what]} characters",
            )
        if value:
            found[what] = value
    if "account" in found:
        found["account"] = "".join(found["account"].split())  # "1 000 001" is an account too
    if not found.get("account") and not found.get("meter"):
        return RowProblem(line, "no_account", "Нет номера л/с и счётчика", "neither account nor meter given")
    taken_at = None
    if "taken_at" in index.at:
        cell = index.cell(cells, "taken_at")
        taken_at = moment_of(cell, layout.date_formats, tz, now)
        if taken_at is None and text_of(cell):
            return RowProblem(
                line,
                "bad_date",
                f"Дата не прочитана: «{text_of(cell)[:40]}»",
                f"date not in the layout's forms: {text_of(cell)[:40]!r}",
            )
    values: dict[str, str] = {}
    positional: tuple[str, ...] = ()
    if layout.columns.values:
        given_all = (text_of(index.cell(cells, f"value:{i}")) for i in range(len(layout.columns.values)))
        positional = tuple(g[:64] for g in given_all if g)
    else:
        for zone in layout.columns.zones:
            given = text_of(index.cell(cells, f"zone:{zone}"))
            if given:
                values[zone] = given[:64]
    raw: dict[str, object] = {"line": line, **found}
    if taken_at is not None:
        raw["taken_at"] = text_of(index.cell(cells, "taken_at"))
    raw["values"] = dict(values) if values else list(positional)
    return RowReading(
        line,
        found.get("account"),
        found.get("meter"),
        values,
        positional,
        taken_at,
        found.get("id"),
        raw,
    )


def moment_of(cell: Cell, forms: list[str], tz: ZoneInfo, now: datetime) -> datetime | None:
    """A date cell as a moment: a bare date is noon that day in the retailer's zone (the moment
    of import when that is later, so today's rows are not from the future); None if unreadable."""
    if cell is None or cell == "":
        return None
    moment: datetime | None = None
    bare = False  # a date without a time of day
    if isinstance(cell, datetime):
        moment = cell if cell.tzinfo else cell.replace(tzinfo=tz)
    elif isinstance(cell, date):
        moment, bare = datetime.combine(cell, time(12), tzinfo=tz), True
    else:
        text = text_of(cell)
        for form in forms:
            try:
                parsed = datetime.strptime(text, form)
            except ValueError:
                continue
            bare = not any(f in form for f in ("%H", "%I", "%M"))
            moment = datetime.combine(parsed.date(), time(12), tz) if bare else parsed.replace(tzinfo=tz)
            break
    if moment is None or not 1900 <= moment.year <= 8999:
        return None
    if bare and moment.date() == now.astimezone(tz).date():
        return min(moment.astimezone(UTC), now)
    return moment.astimezone(UTC)
