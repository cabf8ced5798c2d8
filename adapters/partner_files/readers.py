"""Reading a partner's file as a table, one row at a time: CSV, XLSX and DBF.

Every reader streams: the CSV module reads line by line, openpyxl in read-only mode reads the
sheet's XML as it goes, and the `dbf` package reads one record at a time from the file, so a
file of any length takes the same memory. A file that cannot be read (not the layout's
encoding, not an XLSX, a broken DBF header, no header row) is a `FileProblem`, said in Russian
for the desk and in English for the API and the log.
"""

from __future__ import annotations

import csv
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from adapters.partner_files.layouts import Cell, Layout

csv.field_size_limit(1 << 16)  # a cell longer than 64 KiB is no partner's data: refused, not read
MAX_COLUMNS = 200


class FileProblem(Exception):
    """The file as a whole cannot be read with this layout; nothing of it is decided."""

    def __init__(self, message_ru: str, message_en: str) -> None:
        super().__init__(message_en)
        self.message_ru = message_ru
        self.message_en = message_en


@dataclass
class Table:
    """An open file: its header, its rows as (line or record number, cells) and, when the
    format says so up front, how many rows it has."""

    header: list[str]
    rows: Iterator[tuple[int, list[Cell]]]
    total: int | None = None
    dbf_fields: list[str] = field(default_factory=list)  # a DBF's field specs, for its result file
    dbf_codepage: str | None = None
    _close: Any = None

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None


def open_table(path: Path, layout: Layout) -> Table:
    """`path` read with `layout`'s kind and settings (FileProblem when it cannot be)."""
    if layout.kind == "csv":
        return _csv(path, layout)
    if layout.kind == "xlsx":
        return _xlsx(path, layout)
    return _dbf(path, layout)


def _csv(path: Path, layout: Layout) -> Table:
    encoding = "utf-8-sig" if layout.encoding == "utf-8" else layout.encoding  # a BOM is no cell
    handle = open(path, encoding=encoding, newline="")  # noqa: SIM115 - closed by Table.close
    reader = csv.reader(handle, delimiter=layout.delimiter)
    try:
        for _ in range(layout.skip_rows):
            next(reader, None)
        header = next(reader, None)
    except UnicodeDecodeError:
        handle.close()
        raise _not_encoding(layout) from None
    except csv.Error as exc:
        handle.close()
        raise FileProblem(f"Файл не читается как CSV: {exc}", f"not a CSV file: {exc}") from None
    if not header or len(header) > MAX_COLUMNS:
        handle.close()
        raise _no_header()

    def rows() -> Iterator[tuple[int, list[Cell]]]:
        try:
            for cells in reader:
                yield reader.line_num, list(cells[:MAX_COLUMNS])
        except UnicodeDecodeError:
            raise _not_encoding(layout, reader.line_num + 1) from None
        except csv.Error as exc:
            raise FileProblem(
                f"Строка {reader.line_num}: не читается как CSV ({exc})",
                f"line {reader.line_num}: not CSV ({exc})",
            ) from None

    return Table([str(h) for h in header], rows(), _close=handle.close)


def _xlsx(path: Path, layout: Layout) -> Table:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise FileProblem("Файл не читается как книга Excel (XLSX)", f"not an XLSX workbook: {exc}") from None
    except Exception as exc:  # a damaged workbook: openpyxl and zlib raise whatever they meet
        raise _damaged(exc) from None
    try:
        sheet = book[layout.sheet] if layout.sheet else book.worksheets[0]
    except (KeyError, IndexError):
        book.close()
        raise FileProblem(
            f"В книге нет листа «{layout.sheet}»", f"the workbook has no sheet {layout.sheet!r}"
        ) from None
    numbered = enumerate(sheet.iter_rows(values_only=True), start=1)
    header_row = None
    try:
        for number, cells in numbered:
            if number > layout.skip_rows:
                header_row = cells
                break
    except Exception as exc:
        book.close()
        raise _damaged(exc) from None
    if header_row is None:
        book.close()
        raise _no_header()
    width = len(header_row)
    while width and header_row[width - 1] in (None, ""):
        width -= 1  # empty cells right of the header are no columns
    if not width or width > MAX_COLUMNS:
        book.close()
        raise _no_header()
    total = sheet.max_row - layout.skip_rows - 1 if isinstance(sheet.max_row, int) else None

    def rows() -> Iterator[tuple[int, list[Cell]]]:
        number = 0
        try:
            for number, cells in numbered:
                yield number, list(cells[:width])
        except Exception as exc:  # a sheet damaged past its header (see _damaged)
            raise _damaged(exc, number + 1) from None

    return Table(["" if h is None else str(h) for h in header_row[:width]], rows(), total, _close=book.close)


def _dbf(path: Path, layout: Layout) -> Table:
    import dbf

    try:
        with open(path, "rb") as handle:
            head = handle.read(32)
        # Byte 29 names the code page; 0 means none was written: the layout's encoding applies.
        codepage = layout.encoding if len(head) == 32 and head[29] == 0 else None
        table = dbf.Table(str(path), codepage=codepage)
        table.open(dbf.READ_ONLY)
    except (dbf.DbfError, OSError, ValueError, struct.error) as exc:
        raise FileProblem("Файл не читается как DBF", f"not a DBF file: {exc}") from None
    except Exception as exc:
        raise _damaged(exc) from None
    names = [str(n) for n in table.field_names]
    fields = [str(f) for f in table.structure()]
    name = getattr(table.codepage, "name", None) or str(table.codepage).split(" ")[0]

    def rows() -> Iterator[tuple[int, list[Cell]]]:
        number = 0
        try:
            for number, record in enumerate(table, start=1):
                if dbf.is_deleted(record):
                    continue
                try:
                    cells = [_dbf_cell(v) for v in record]
                except UnicodeDecodeError:
                    raise _not_encoding(layout, number) from None
                yield number, cells
        except FileProblem:
            raise
        except Exception as exc:  # a record the dbf package cannot decode (see _damaged)
            raise _damaged(exc, number) from None

    return Table(names, rows(), len(table), fields, name, _close=table.close)


def _dbf_cell(value: Any) -> Cell:
    """A field's value as read: text without its padding; numbers, dates and logicals as they are
    (the result file writes them back into fields of the same types)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool | int | float | date | datetime) or value is None:
        return value
    return str(value)


def _not_encoding(layout: Layout, line: int | None = None) -> FileProblem:
    where_ru = f" (строка {line})" if line else ""
    where_en = f" (line {line})" if line else ""
    return FileProblem(
        f"Файл не в кодировке {layout.encoding}{where_ru}: сохраните его в ней или выберите другой формат",
        f"the file is not {layout.encoding}{where_en}",
    )


def _damaged(exc: Exception, line: int | None = None) -> FileProblem:
    """A file its parser stopped on: the readers' libraries (openpyxl, zlib, dbf) raise whatever
    they meet in a damaged file, and any of it means the same to the partner."""
    where_ru = f" (строка {line})" if line else ""
    where_en = f" at row {line}" if line else ""
    return FileProblem(
        f"Файл повреждён{where_ru}: пришлите его заново",
        f"the file is damaged{where_en}: {type(exc).__name__}: {exc}"[:300],
    )


def _no_header() -> FileProblem:
    return FileProblem("В файле нет строки заголовков", "the file has no header row")
