"""Partners' file imports inside a running gateway: one `Imports` per gateway, used by every door
that takes files (the API and the drop folder in adapters/partners/, the desk's upload in
adapters/web/), so they share the layouts, the result folder, the limit of imports at once and
the counters.

Files are kept under `[files] dir`: `incoming/` (uploads while they arrive and are imported,
then deleted), `results/` (each import's result file, `<import id>-<name>.result.<ext>`) and
`drop/<partner>/` (the drop folders, adapters/partners/drop.py).
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from adapters.partner_files.config import FilesConfig, Partner
from adapters.partner_files.importing import Importer, ImportSummary, ResultPath, result_in
from adapters.partner_files.layouts import Layout, configured_layouts
from adapters.partner_files.readers import FileProblem
from adapters.partner_files.stats import FileStats, stats_for
from adapters.partner_files.tables import partner_imports
from gateway.host import Host

IMPORTS_AT_ONCE = 2  # each import already shares the intake with everyone; more would only queue there

_BY_HOST: weakref.WeakKeyDictionary[Any, Imports] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class StoredImport:
    """One row of `partner_imports`, as the API and the desk show it."""

    import_id: int
    partner: str
    layout: str
    file_name: str
    via: str
    actor: str
    started_at: Any
    finished_at: Any
    rows: int
    accepted: int
    held: int
    rejected: int
    repeated: int
    unreadable: int
    result_name: str | None
    error: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "import_id": self.import_id,
            "partner": self.partner,
            "layout": self.layout,
            "file_name": self.file_name,
            "via": self.via,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "rows": self.rows,
            "accepted": self.accepted,
            "held": self.held,
            "rejected": self.rejected,
            "repeated": self.repeated,
            "unreadable": self.unreadable,
            "error": self.error,
        }


class Imports:
    """The gateway's imports of partners' files (see the module's opening)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.config = host.config.section("files", FilesConfig)
        self.layouts: dict[str, Layout] = configured_layouts(self.config)
        self.root = Path(self.config.dir)
        self.results = self.root / "results"
        self.incoming = self.root / "incoming"
        self.stats: FileStats = stats_for(host.metrics.registry)
        self.importer = Importer(host.engine, host.intake, self.config, host.calendar.timezone, host.clock)
        self._slots = asyncio.Semaphore(IMPORTS_AT_ONCE)

    def partner(self, partner_id: str) -> Partner | None:
        return self.config.partner(partner_id)

    def layout_of(self, partner: Partner, wanted: str | None) -> Layout:
        """The layout asked for (any known one), else the partner's own."""
        layout_id = wanted or partner.layout
        if layout_id not in self.layouts:
            raise FileProblem(
                f"Нет формата {layout_id}",
                f"no layout {layout_id!r} (known: {', '.join(sorted(self.layouts))})",
            )
        return self.layouts[layout_id]

    async def take(
        self,
        path: Path,
        file_name: str,
        partner: Partner,
        layout: Layout,
        via: str,
        actor: str,
        result_path: ResultPath | None = None,
    ) -> ImportSummary:
        """Import one file; FileProblem (counted as refused) when it cannot be read as a whole."""
        async with self._slots:
            try:
                summary = await self.importer.run(
                    path,
                    file_name,
                    partner.id,
                    layout,
                    via,
                    actor,
                    result_path or result_in(self.results, file_name),
                )
            except FileProblem as exc:
                self.stats.refused_file(partner.id, via, exc.message_en)
                raise
        self.stats.imported(summary, via, self.host.clock())
        return summary

    async def stored(self, import_id: int) -> StoredImport | None:
        query = select(partner_imports).where(partner_imports.c.id == import_id)
        async with self.host.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _stored(row)

    async def recent(self, limit: int = 20) -> list[StoredImport]:
        query = select(partner_imports).order_by(partner_imports.c.id.desc()).limit(limit)
        async with self.host.engine.connect() as conn:
            return [_stored(r) for r in (await conn.execute(query)).mappings().all()]

    def result_file(self, stored: StoredImport) -> Path | None:
        """The result file the gateway keeps of an import (the API's, the desk's, a drop
        folder's), if it is still there; the command line's went where its caller said."""
        folders = {
            "api": self.results,
            "desk": self.results,
            "drop": self.root / "drop" / stored.partner / "out",
        }
        folder = folders.get(stored.via)
        if not stored.result_name or folder is None:
            return None
        path = folder / stored.result_name
        return path if path.is_file() else None


def _stored(row: Any) -> StoredImport:
    fields = {name: row[name] for name in StoredImport.__dataclass_fields__ if name != "import_id"}
    return StoredImport(import_id=row["id"], **fields)


def imports_for(host: Host) -> Imports:
    """The running gateway's one `Imports` (made by the first door that asks)."""
    found = _BY_HOST.get(host)
    if found is None:
        found = _BY_HOST[host] = Imports(host)
    return found
