"""A business customer's monthly report as a file: the CSV layout, read into one submission per
metering point and day (README, "Business customers").

The layout, as Excel saves it ("CSV UTF-8" or plain "CSV" in Windows-1251; `;`, `,` or a tab
between cells; or the workbook itself, .xlsx, its first sheet), a header row first, one of two
shapes:

    счётчик;зона;показание;дата          (long: one zone a row)
    45871234;Т1;12345,6;20.11.2026
    45871234;Т2;4567;20.11.2026

    точка учёта;Т1;Т2;дата               (wide: one point a row, a column per zone)
    Цех 1, ввод 2;12345,6;4567;20.11.2026

The meter is named by its number (`счётчик`, `meter`) or the point's name as the registry gives
it (`точка учёта`, `point`); `зона` (`zone`) is `Т`, `Т1`..`Т3` (Latin `T` too, or `день`,
`ночь`, `полупик`), left out for a single-rate meter; `дата` (`date`, `ДД.ММ.ГГГГ` or
`ГГГГ-ММ-ДД`) is the day the meter was read, left out for today. Rows of one meter and day are
one submission (every zone of a two-rate meter together). A row that names a meter not on the
contract, a zone the meter has not, or a date that is not one is refused with its line; the
other rows go on. Values are passed on as written: the intake's rules judge them.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

MAX_BYTES = 1_000_000
MAX_ROWS = 5000
MAX_CELL = 128

_HEADERS = {
    "meter": ("счётчик", "счетчик", "номер счётчика", "номер счетчика", "заводской номер", "meter"),
    "point": ("точка учёта", "точка учета", "точка", "point"),
    "zone": ("зона", "тариф", "zone"),
    "value": ("показание", "показания", "value"),
    "date": ("дата", "дата снятия", "date"),
}
_ZONES = {
    "т": "T",
    "t": "T",
    "т1": "T1",
    "t1": "T1",
    "день": "T1",
    "т2": "T2",
    "t2": "T2",
    "ночь": "T2",
    "т3": "T3",
    "t3": "T3",
    "полупик": "T3",
}
_ZIP = b"PK\x03\x04"  # an .xlsx workbook is a zip archive
_DAY = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})|(\d{4})-(\d{2})-(\d{2})")


class ReportError(ValueError):
    """The file as a whole cannot be read (its size, encoding, header)."""


@dataclass(frozen=True, slots=True)
class Point:
    """A metering point of the contract: the meter's number, the point's name, its zones."""

    serial: str
    name: str | None
    zones: tuple[str, ...]


@dataclass
class Reading:
    """One submission the file makes: a meter's values of one day, and the lines they came from."""

    serial: str
    day: date | None
    values: dict[str, str] = field(default_factory=dict)
    lines: list[int] = field(default_factory=list)


@dataclass
class Report:
    readings: list[Reading]
    refused: list[tuple[int, str]]  # (line, reason in Russian)


def read_report(data: bytes, points: Iterable[Point]) -> Report:
    """The file's readings of the contract's `points`, and the lines refused; ReportError when
    the file as a whole cannot be read."""
    if len(data) > MAX_BYTES:
        raise ReportError(f"Файл больше {MAX_BYTES // 1000} КБ: разделите его на части")
    rows: Iterator[list[str]]
    if data.startswith(_ZIP):
        rows = _xlsx_rows(data)
    else:
        text = _decode(data)
        first = text.split("\n", 1)[0]
        delimiter = max(";,\t", key=first.count)
        rows = _csv_rows(text, delimiter)
    try:
        header = [_norm(h) for h in next(rows)]
    except StopIteration:
        raise ReportError("Файл пуст: нужна строка заголовков и строки с показаниями") from None
    columns = {key: _find(header, names) for key, names in _HEADERS.items()}
    zone_columns = {i: _ZONES[h] for i, h in enumerate(header) if h in _ZONES}
    if columns["meter"] is None and columns["point"] is None:
        raise ReportError("Нет столбца «счётчик» или «точка учёта» в первой строке")
    if columns["value"] is None and not zone_columns:
        raise ReportError("Нет столбца «показание» или столбцов зон (Т1, Т2, Т3) в первой строке")
    by_serial = {p.serial.upper(): p for p in points}
    by_name = {_norm(p.name): p for p in by_serial.values() if p.name}
    found: dict[tuple[str, date | None], Reading] = {}
    refused: list[tuple[int, str]] = []
    for number, cells in enumerate(rows, start=2):
        if number > MAX_ROWS + 1:
            raise ReportError(f"В файле больше {MAX_ROWS} строк: разделите его на части")
        cells = [c.strip()[:MAX_CELL] for c in cells]
        if not any(cells):
            continue
        try:
            point = _point(cells, columns, by_serial, by_name)
            day = _day(_cell(cells, columns["date"]))
            values = _values(cells, columns, zone_columns, point)
        except ValueError as exc:
            refused.append((number, str(exc)))
            continue
        reading = found.setdefault((point.serial, day), Reading(point.serial, day))
        twice = sorted(set(values) & set(reading.values))
        if twice:
            refused.append((number, f"Зона {', '.join(twice)} счётчика {point.serial} уже указана выше"))
            continue
        reading.values.update(values)
        reading.lines.append(number)
    return Report(list(found.values()), refused)


def _csv_rows(text: str, delimiter: str) -> Iterator[list[str]]:
    """The CSV's rows; a bare CR ends a line (old Excel for Mac). What the csv module cannot read
    (a NUL, a quote left open across a line end it will not take) refuses the file, not a 500."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        yield from reader
    except csv.Error as exc:
        raise ReportError(f"Строка {reader.line_num}: файл не читается как CSV ({exc})") from None


def _xlsx_rows(data: bytes) -> Iterator[list[str]]:
    """The first sheet of an Excel workbook (.xlsx) as rows of text, the way the CSV reader gives
    them: numbers as written (no exponent), dates as ДД.ММ.ГГГГ, empty cells as ""."""
    from openpyxl import load_workbook  # only when a workbook is uploaded

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # a damaged or foreign zip: openpyxl raises many kinds
        raise ReportError(
            "Файл не читается как книга Excel (.xlsx): сохраните его заново или как CSV"
        ) from exc
    try:
        sheet = book.worksheets[0]
        for row in sheet.iter_rows(values_only=True):
            yield [_xlsx_cell(v) for v in row]
    except Exception as exc:  # damage inside the sheet shows only as it is read
        raise ReportError(
            "Файл не читается как книга Excel (.xlsx): сохраните его заново или как CSV"
        ) from exc
    finally:
        book.close()


def _xlsx_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.strftime("%d.%m.%Y")
    if isinstance(value, float):
        text = format(Decimal(repr(value)), "f")  # 12345.6, not 12345.600000000000364
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def _decode(data: bytes) -> str:
    """UTF-8 (with or without the BOM Excel writes), else Windows-1251 (Excel's plain CSV)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1251", errors="replace")


def _norm(text: str | None) -> str:
    """A header or name as compared: lower case, "ё" as "е", spaces folded."""
    return " ".join((text or "").replace("\ufeff", "").lower().replace("ё", "е").split())


def _find(header: list[str], names: tuple[str, ...]) -> int | None:
    wanted = {_norm(n) for n in names}
    return next((i for i, h in enumerate(header) if h in wanted), None)


def _cell(cells: list[str], column: int | None) -> str:
    return cells[column] if column is not None and column < len(cells) else ""


def _point(
    cells: list[str], columns: dict[str, int | None], by_serial: dict[str, Point], by_name: dict[str, Point]
) -> Point:
    serial = _cell(cells, columns["meter"])
    name = _cell(cells, columns["point"])
    point = by_serial.get(serial.upper()) if serial else by_name.get(_norm(name))
    if point is None:
        told = serial or name
        if not told:
            raise ValueError("Не указан счётчик или точка учёта")
        raise ValueError(f"В договоре нет счётчика или точки учёта «{told[:40]}»")
    return point


def _day(text: str) -> date | None:
    if not text:
        return None
    match = _DAY.fullmatch(text)
    try:
        if match is None:
            raise ValueError
        if match.group(1):
            return date(int(match.group(3)), int(match.group(2)), int(match.group(1)))
        return date(int(match.group(4)), int(match.group(5)), int(match.group(6)))
    except ValueError:
        raise ValueError(f"Дата «{text[:20]}» не похожа на ДД.ММ.ГГГГ") from None


def _values(
    cells: list[str], columns: dict[str, int | None], zone_columns: dict[int, str], point: Point
) -> dict[str, str]:
    """The row's values by zone: the wide shape's zone columns, else the value and its zone."""
    if zone_columns:
        values = {zone: cells[i] for i, zone in zone_columns.items() if i < len(cells) and cells[i]}
        if not values:
            raise ValueError("Нет показаний в строке")
    else:
        value = _cell(cells, columns["value"])
        if not value:
            raise ValueError("Нет показания в строке")
        zone_text = _norm(_cell(cells, columns["zone"]))
        if not zone_text:
            zone = "T" if point.zones == ("T",) else None
            if zone is None:
                raise ValueError(f"Укажите зону: у счётчика {point.serial} зоны {', '.join(point.zones)}")
        elif zone_text in _ZONES:
            zone = _ZONES[zone_text]
        else:
            raise ValueError(f"Зона «{zone_text[:10]}» не Т, Т1, Т2 или Т3")
        values = {zone: value}
    if point.zones == ("T",) and set(values) == {"T1"}:
        values = {"T": values["T1"]}  # one value in the first zone column of a single-rate meter
    extra = sorted(set(values) - set(point.zones))
    if extra:
        raise ValueError(
            f"У счётчика {point.serial} нет зоны {', '.join(extra)} (его зоны: {', '.join(point.zones)})"
        )
    return values
