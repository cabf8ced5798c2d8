"""Writing a small file of a layout from a header and rows: what the layouts' test vectors, the
tests, the demo and the benchmark use to make real CSV, XLSX and DBF files.

A DBF's fields are inferred from the rows: a column of dates is `D`, of numbers `N(18,d)` with
the decimals its values need (an empty cell is an empty number), anything else `C` as wide as
its longest value.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from adapters.partner_files.layouts import Cell, Layout
from adapters.partner_files.rows import text_of

_DBF_FIELD = re.compile(r"[^A-Z0-9_]")


def write_sample(path: Path, layout: Layout, header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> Path:
    """`rows` under `header` as a file of `layout` (title lines first when it skips some)."""
    titles = [[f"Реестр {layout.name}"]] + [[""]] * max(0, layout.skip_rows - 1)
    titles = titles[: layout.skip_rows]
    if layout.kind == "csv":
        first = layout.date_formats[0] if layout.date_formats else "%Y-%m-%d"
        with open(path, "w", encoding=layout.encoding, newline="") as handle:
            out = csv.writer(handle, delimiter=layout.delimiter)
            out.writerows(titles)
            out.writerow(header)
            for row in rows:
                out.writerow([_csv_cell(c, first) for c in row])
    elif layout.kind == "xlsx":
        from openpyxl import Workbook

        book = Workbook(write_only=True)
        sheet = book.create_sheet(layout.sheet or "Лист1")
        for title in titles:
            sheet.append(title)
        sheet.append(list(header))
        for row in rows:
            sheet.append([None if c == "" else c for c in row])
        book.save(path)
    else:
        _write_dbf(path, layout, header, [list(r) for r in rows])
    return path


def _csv_cell(cell: Cell, date_form: str) -> str:
    if isinstance(cell, datetime):
        return cell.strftime(date_form if "%H" in date_form else date_form + " %H:%M:%S")
    if isinstance(cell, date):
        return cell.strftime(date_form)
    return text_of(cell)


def _write_dbf(path: Path, layout: Layout, header: Sequence[str], rows: list[list[Cell]]) -> None:
    import dbf

    specs = []
    for i, name in enumerate(header):
        column = [r[i] if i < len(r) else None for r in rows]
        given = [c for c in column if c not in (None, "")]
        field = _DBF_FIELD.sub("_", str(name).upper())[:10] or f"F{i}"
        if given and all(isinstance(c, date) and not isinstance(c, datetime) for c in given):
            specs.append(f"{field} D")
        elif given and all(isinstance(c, int | float) and not isinstance(c, bool) for c in given):
            decimals = max(-min(Decimal(repr(c)).normalize().as_tuple().exponent, 0) for c in given)  # type: ignore[operator]
            specs.append(f"{field} N(18,{min(int(decimals), 6)})")
        else:
            width = max([len(text_of(c)) for c in given] + [1])
            specs.append(f"{field} C({min(width, 254)})")
    table = dbf.Table(str(path), "; ".join(specs), codepage=layout.encoding)
    table.open(dbf.READ_WRITE)
    try:
        for row in rows:
            cells = [None if c == "" else c for c in row]
            table.append(
                tuple(
                    text_of(c) if s.endswith(")") and " C(" in s else c
                    for c, s in zip(cells, specs, strict=True)
                )
            )
    finally:
        table.close()
