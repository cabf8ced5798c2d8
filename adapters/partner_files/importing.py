"""Importing a partner's file: every row through the one intake, a result file beside it.

Whatever brought the file (the command line, `POST /api/v1/files`, the desk's upload, the drop
folder), an import is the same steps: the file's SHA-256, its layout (named, the partner's, or
the one whose columns the header has), a row in `partner_imports`, then the rows in chunks of
`[files] chunk_rows`: each chunk read in a thread, handed to `Intake.submit_many` (so a chunk
shares the intake's commits with everyone else's submissions), its verdicts written to the
result file in a thread. Memory holds one chunk, whatever the file's length.

A row becomes a `Submission(channel=FILE, sender=<partner>)` whose message id is
`<partner>:<the row's id>` when the layout has an id column (a payment's number in the
partner's system), else `<partner>:<first 16 hex of the file's SHA-256>:<line>`. So importing a
file again changes nothing: every row is answered from the store, counted as `repeated`, and
the summary says when the same file was imported before.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.partner_files.config import FilesConfig
from adapters.partner_files.layouts import Cell, Layout, kind_of
from adapters.partner_files.readers import FileProblem, Table, open_table
from adapters.partner_files.results import UNREAD_RU, ResultWriter, verdict_text
from adapters.partner_files.rows import ColumnIndex, RowProblem, RowReading, fits, read_row
from adapters.partner_files.tables import partner_imports
from gateway.intake import Intake
from gateway.model import Channel, Status, Submission, Verdict

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Progress = Callable[[int, int | None], None]  # (rows just decided, how many the file may have)
ResultPath = Callable[[int], Path]  # the import's id -> where its result file goes
_UNSAFE_NAME = re.compile(r"[^\w.()+-]+")


def safe_name(name: str, fallback: str = "file") -> str:
    """A sender's file name as a name of our own: its last part, letters, digits and a few signs."""
    base = _UNSAFE_NAME.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip("._")
    return (base or fallback)[-100:]


def result_in(directory: Path, file_name: str) -> ResultPath:
    """Results kept by the gateway: `<directory>/<import id>-<name>.result<suffix>`."""
    stem, dot, suffix = safe_name(file_name).rpartition(".")
    name = f"{stem}.result.{suffix}" if dot and stem else f"{safe_name(file_name)}.result"
    return lambda import_id: directory / f"{import_id}-{name}"


@dataclass(frozen=True)
class Earlier:
    """An earlier import of the same file by the same partner."""

    import_id: int
    started_at: datetime


@dataclass
class ImportSummary:
    """What an import did, for the command line, the API's answer and the desk."""

    import_id: int
    partner: str
    layout: str
    file_name: str
    result_path: Path
    rows: int = 0
    accepted: int = 0
    held: int = 0
    rejected: int = 0
    repeated: int = 0
    unreadable: int = 0
    earlier: list[Earlier] = field(default_factory=list)

    @property
    def nothing_new(self) -> bool:
        """Every readable row had been decided before: the import changed nothing."""
        return self.rows > 0 and self.repeated == self.rows - self.unreadable

    def count(self, verdict: Verdict) -> None:
        if verdict.duplicate:
            self.repeated += 1
        elif verdict.status is Status.ACCEPTED:
            self.accepted += 1
        elif verdict.status is Status.REJECTED:
            self.rejected += 1
        else:
            self.held += 1

    def as_dict(self) -> dict[str, object]:
        return {
            "import_id": self.import_id,
            "partner": self.partner,
            "layout": self.layout,
            "file_name": self.file_name,
            "rows": self.rows,
            "accepted": self.accepted,
            "held": self.held,
            "rejected": self.rejected,
            "repeated": self.repeated,
            "unreadable": self.unreadable,
            "nothing_new": self.nothing_new,
            "earlier_imports": [
                {"import_id": e.import_id, "started_at": e.started_at.isoformat()} for e in self.earlier
            ],
        }

    def summary(self) -> str:
        """In English, for the command line and the log."""
        lines = [
            f"import {self.import_id}: {self.file_name} from {self.partner} (layout {self.layout}): "
            f"{self.rows} rows: {self.accepted} accepted, {self.held} held for review, "
            f"{self.rejected} refused, {self.repeated} repeated, {self.unreadable} unreadable",
        ]
        if self.earlier:
            first = self.earlier[0]
            lines.append(
                f"this file was imported before (import {first.import_id} on "
                f"{first.started_at:%Y-%m-%d %H:%M} UTC)"
            )
        if self.nothing_new:
            lines.append("nothing changed: every row had been decided before")
        lines.append(f"result: {self.result_path}")
        return "\n".join(lines)

    def summary_ru(self) -> str:
        """In Russian, for the desk."""
        text = (
            f"Файл {self.file_name} ({self.partner}, формат {self.layout}): строк {self.rows}; "
            f"принято {self.accepted}, на проверке {self.held}, не принято {self.rejected}, "
            f"повторов {self.repeated}, не прочитано {self.unreadable}."
        )
        if self.earlier:
            text += f" Этот файл уже загружали (загрузка № {self.earlier[0].import_id})."
        if self.nothing_new:
            text += " Ничего не изменилось: все строки уже были учтены."
        return text


def file_digest(path: Path) -> tuple[str, int]:
    """The file's SHA-256 and its count of line ends (the most rows a CSV can have)."""
    digest = hashlib.sha256()
    lines = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            lines += block.count(b"\n")
    return digest.hexdigest(), lines


def choose_layout(path: Path, layouts: dict[str, Layout], wanted: str | None) -> Layout:
    """The layout named, else the only one of the file's kind whose columns its header has."""
    if wanted is not None:
        if wanted not in layouts:
            raise FileProblem(
                f"Нет формата {wanted}", f"no layout {wanted!r} (known: {', '.join(sorted(layouts))})"
            )
        return layouts[wanted]
    kind = kind_of(path)
    fitting = []
    for layout in layouts.values():
        if kind is not None and layout.kind != kind:
            continue
        try:
            table = open_table(path, layout)
        except FileProblem:
            continue
        try:
            if fits(layout, table.header):
                fitting.append(layout)
        finally:
            table.close()
    if len(fitting) == 1:
        return fitting[0]
    if not fitting:
        raise FileProblem(
            "Ни один формат не подходит к заголовкам файла: выберите формат",
            "no layout fits the file's header; name one with --format",
        )
    names = ", ".join(sorted(layout.id for layout in fitting))
    raise FileProblem(
        f"К файлу подходят несколько форматов ({names}): выберите один",
        f"several layouts fit the file ({names}); name one with --format",
    )


@dataclass(frozen=True)
class _Row:
    cells: list[Cell]
    read: RowReading | RowProblem


def _take(
    rows: Iterator[tuple[int, list[Cell]]], n: int, index: ColumnIndex, tz: ZoneInfo, now: datetime
) -> list[_Row]:
    """Up to `n` rows that hold something, read with the layout (run in a thread)."""
    chunk: list[_Row] = []
    for line, cells in rows:
        read = read_row(index, cells, line, tz, now)
        if read is not None:
            chunk.append(_Row(cells, read))
            if len(chunk) >= n:
                break
    return chunk


def _write(writer: ResultWriter, lines: list[tuple[list[Cell], str, str, str]]) -> None:
    for cells, verdict, reason, receipt in lines:
        writer.write(cells, verdict, reason, receipt)


class Importer:
    """Imports partners' files through one intake (one per running gateway or command)."""

    def __init__(
        self, engine: AsyncEngine, intake: Intake, config: FilesConfig, tz: ZoneInfo, clock: Clock
    ) -> None:
        self.engine = engine
        self.intake = intake
        self.config = config
        self.tz = tz
        self.clock = clock

    async def run(
        self,
        path: Path,
        file_name: str,
        partner: str,
        layout: Layout,
        via: str,
        actor: str,
        result_path: ResultPath,
        progress: Progress | None = None,
    ) -> ImportSummary:
        """Import `path` (named `file_name` by its sender) for `partner`; FileProblem when the
        file as a whole cannot be taken (then nothing of it was decided, or, for a file longer
        than it said, the rows before the limit)."""
        sha, line_ends = await asyncio.to_thread(file_digest, path)
        table = await asyncio.to_thread(open_table, path, layout)
        try:
            return await self._run(
                table, sha, line_ends, file_name, partner, layout, via, actor, result_path, progress
            )
        finally:
            await asyncio.to_thread(table.close)

    async def _run(
        self,
        table: Table,
        sha: str,
        line_ends: int,
        file_name: str,
        partner: str,
        layout: Layout,
        via: str,
        actor: str,
        result_path: ResultPath,
        progress: Progress | None,
    ) -> ImportSummary:
        index = ColumnIndex(layout, table.header)
        total = table.total if table.total is not None else line_ends
        limit = self.config.max_rows
        if total > limit + layout.skip_rows + 1:
            raise FileProblem(
                f"В файле больше {limit} строк: разделите его", f"the file has more than {limit} rows"
            )
        earlier = await self._earlier(partner, sha)
        import_id = await self._start(partner, layout.id, file_name[:255], sha, via, actor[:128])
        target = result_path(import_id)
        summary = ImportSummary(import_id, partner, layout.id, file_name, target, earlier=earlier)
        if progress is not None:
            progress(0, max(0, total - layout.skip_rows - 1) if table.total is None else total)
        try:
            writer = await asyncio.to_thread(ResultWriter, target, layout, table)
        except FileProblem as exc:
            await self._finish(summary, error=exc.message_en)
            raise
        # One chunk is decided while the next is read and the one before recorded: the intake
        # takes chunks in the order they are handed to it, so a meter's rows keep their order.
        in_flight: tuple[list[_Row], asyncio.Task[list[Verdict]]] | None = None
        try:
            while True:
                now = self.clock()
                chunk = await asyncio.to_thread(
                    _take, table.rows, self.config.chunk_rows, index, self.tz, now
                )
                handed: asyncio.Task[list[Verdict]] | None = None
                if chunk:
                    summary.rows += len(chunk)
                    if summary.rows > limit:
                        raise FileProblem(
                            f"В файле больше {limit} строк: разделите его; первые {limit} учтены",
                            f"the file has more than {limit} rows; the first {limit} were decided",
                        )
                    subs = self._submissions(chunk, sha, file_name, partner, now)
                    handed = asyncio.create_task(self.intake.submit_many(subs))
                if in_flight is not None:
                    decided, verdicts = in_flight
                    in_flight = None
                    await self._record(decided, await verdicts, writer, summary)
                    if progress is not None:
                        progress(len(decided), None)
                if handed is None:
                    break
                in_flight = (chunk, handed)
            await asyncio.to_thread(writer.finish)
        except BaseException as exc:
            if in_flight is not None:  # decided or not, it is not waited for unseen
                await asyncio.gather(in_flight[1], return_exceptions=True)
            await asyncio.to_thread(writer.abandon)
            error = exc.message_en if isinstance(exc, FileProblem) else type(exc).__name__
            await self._finish(summary, error=error)
            raise
        await self._finish(summary)
        log.info("partner file: %s", summary.summary().splitlines()[0])
        return summary

    def _submissions(
        self, chunk: list[_Row], sha: str, file_name: str, partner: str, now: datetime
    ) -> list[Submission]:
        """The chunk's readable rows as the intake's submissions, in order."""
        subs = []
        sender = self.config.partner(partner)
        control = sender is not None and sender.control  # an inspectors' file: control readings
        for row in chunk:
            r = row.read
            if isinstance(r, RowReading):
                key = r.row_id if r.row_id is not None else f"{sha[:16]}:{r.line}"
                subs.append(
                    Submission(
                        channel=Channel.FILE,
                        received_at=now,
                        sender=partner,
                        account=r.account,
                        meter_serial=r.meter,
                        values=r.values,
                        positional_values=r.positional,
                        taken_at=r.taken_at,
                        channel_message_id=f"{partner}:{key}",
                        raw=orjson.dumps({"file": file_name, **r.raw}).decode(),
                        control=control,
                    )
                )
        return subs

    async def _record(
        self, chunk: list[_Row], decided: list[Verdict], writer: ResultWriter, summary: ImportSummary
    ) -> None:
        """Count the chunk's verdicts and write its rows to the result file."""
        verdicts = iter(decided)
        lines = []
        for row in chunk:
            r = row.read
            if isinstance(r, RowProblem):
                summary.unreadable += 1
                lines.append((row.cells, UNREAD_RU, r.message_ru, ""))
            else:
                verdict = next(verdicts)
                summary.count(verdict)
                lines.append((row.cells, *verdict_text(verdict)))
        await asyncio.to_thread(_write, writer, lines)

    async def _earlier(self, partner: str, sha: str) -> list[Earlier]:
        query = (
            select(partner_imports.c.id, partner_imports.c.started_at)
            .where(partner_imports.c.partner == partner, partner_imports.c.sha256 == sha)
            .order_by(partner_imports.c.id)
        )
        async with self.engine.connect() as conn:
            return [Earlier(r.id, r.started_at) for r in await conn.execute(query)]

    async def _start(self, partner: str, layout: str, file_name: str, sha: str, via: str, actor: str) -> int:
        row = {
            "partner": partner,
            "layout": layout,
            "file_name": file_name,
            "sha256": sha,
            "via": via,
            "actor": actor,
            "started_at": self.clock(),
            "rows": 0,
            "accepted": 0,
            "held": 0,
            "rejected": 0,
            "repeated": 0,
            "unreadable": 0,
        }
        async with self.engine.begin() as conn:
            result = await conn.execute(insert(partner_imports).values(row).returning(partner_imports.c.id))
            return int(result.scalar_one())

    async def _finish(self, summary: ImportSummary, error: str | None = None) -> None:
        values = {
            "finished_at": self.clock(),
            "rows": summary.rows,
            "accepted": summary.accepted,
            "held": summary.held,
            "rejected": summary.rejected,
            "repeated": summary.repeated,
            "unreadable": summary.unreadable,
            "result_name": None if error else summary.result_path.name[:255],
            "error": error,
        }
        async with self.engine.begin() as conn:
            await conn.execute(
                update(partner_imports).where(partner_imports.c.id == summary.import_id).values(values)
            )
