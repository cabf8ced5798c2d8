"""The result file of an import, in the partner's own layout: every row as it came, with three
columns added (the layout's `[result]` names): the verdict, its reason and the receipt.

CSV comes back in the file's encoding and delimiter, XLSX as a workbook (openpyxl's write-only
mode, which streams rows to disk), DBF with the file's own fields and code page plus
`RESULT C(20)`, `REASON C(254)` and `RECEIPT N(18,0)` (or the names the layout gives). Each is
written beside its target as `.<name>.part` and renamed into place when complete, so a partner
never picks up half a result.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

from adapters.partner_files.layouts import Cell, Layout
from adapters.partner_files.readers import FileProblem, Table
from adapters.partner_files.rows import text_of
from gateway.model import Status, Verdict

VERDICT_RU = {
    Status.ACCEPTED: "принято",
    Status.FLAGGED: "на проверке",
    Status.NEEDS_CONFIRMATION: "ждёт подтверждения",
    Status.REJECTED: "не принято",
}
UNREAD_RU = "не прочитано"
_XML_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # what an XLSX cell cannot hold


def verdict_text(verdict: Verdict) -> tuple[str, str, str]:
    """(verdict, reason, receipt) as the result columns say them."""
    said = VERDICT_RU[verdict.status]
    if verdict.duplicate:
        said = f"повтор: {said}"
    reason = "; ".join(r.message_ru for r in verdict.reasons)
    return said, reason, "" if verdict.receipt is None else str(verdict.receipt)


class ResultWriter:
    """Rows with their verdicts, written to `target` in the layout's kind."""

    def __init__(self, target: Path, layout: Layout, table: Table) -> None:
        self.target = target
        self.layout = layout
        self.partial = target.with_name(f".{target.name}.part")
        target.parent.mkdir(parents=True, exist_ok=True)
        added = [layout.result.verdict, layout.result.reason, layout.result.receipt]
        self.width = len(table.header)
        self._writer: Any
        self._close: Any
        if layout.kind == "csv":
            handle = open(  # noqa: SIM115 - closed in finish/abandon
                self.partial, "w", encoding=layout.encoding, errors="replace", newline=""
            )
            self._writer = csv.writer(handle, delimiter=layout.delimiter)
            self._writer.writerow([*table.header, *added])
            self._close = handle.close
            self._append = self._csv_row
        elif layout.kind == "xlsx":
            from openpyxl import Workbook

            self._book = Workbook(write_only=True)
            self._sheet = self._book.create_sheet(layout.sheet or "Результат")
            self._sheet.append([_safe(h) for h in [*table.header, *added]])
            self._close = lambda: None
            self._append = self._xlsx_row
        else:
            import dbf

            taken = {name.upper() for name in table.header}
            clash = [name for name in added if name.upper() in taken]
            if clash:
                raise FileProblem(
                    f"В файле уже есть поля {', '.join(clash)}: результат некуда записать",
                    f"the file already has fields {', '.join(clash)} the result needs",
                )
            specs = [
                *table.dbf_fields,
                f"{added[0]} C(20)",
                f"{added[1]} C(254)",
                f"{added[2]} N(18,0)",
            ]
            self._table = dbf.Table(str(self.partial), "; ".join(specs), codepage=table.dbf_codepage)
            self._table.open(dbf.READ_WRITE)
            self._close = self._table.close
            self._append = self._dbf_row

    def write(self, cells: list[Cell], verdict: str, reason: str, receipt: str) -> None:
        """One row under the header: short rows padded, cells past the header left out, so the
        added columns stay where the header puts them."""
        if len(cells) != self.width:
            cells = (cells + [None] * self.width)[: self.width]
        self._append(cells, verdict, reason, receipt)

    def _csv_row(self, cells: list[Cell], verdict: str, reason: str, receipt: str) -> None:
        self._writer.writerow(
            [text_of(c) if not isinstance(c, str) else c for c in cells] + [verdict, reason, receipt]
        )

    def _xlsx_row(self, cells: list[Cell], verdict: str, reason: str, receipt: str) -> None:
        self._sheet.append([_safe(c) for c in cells] + [verdict, reason, int(receipt) if receipt else None])

    def _dbf_row(self, cells: list[Cell], verdict: str, reason: str, receipt: str) -> None:
        self._table.append((*cells, verdict[:20], reason[:254], int(receipt) if receipt else None))

    def finish(self) -> Path:
        """Close the file and put it in place."""
        if self.layout.kind == "xlsx":
            self._book.save(self.partial)
        self._close()
        os.replace(self.partial, self.target)
        return self.target

    def abandon(self) -> None:
        try:
            self._close()
        finally:
            self.partial.unlink(missing_ok=True)


def _safe(cell: Cell) -> Cell:
    if isinstance(cell, str):
        return _XML_UNSAFE.sub("\ufffd", cell)
    return cell
