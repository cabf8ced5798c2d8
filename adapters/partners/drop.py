"""The drop folders: for systems that can only copy files somewhere.

Each configured partner has `[files] dir/drop/<partner>/` with

* `in/`: where the partner copies its files. A file is taken once its size and modification
  time have not changed between two looks (`[files] drop_poll_seconds` apart), so one still being
  copied is left alone; names starting with a dot (how careful copiers write a file before
  renaming it) are never taken.
* `processing/`: a taken file while it is imported. Taking is a rename, atomic on one file
  system, so of several gateway processes watching the same folder exactly one takes a file.
  A file left here by a stop is imported again at the next start (its decided rows are
  recognised and change nothing).
* `out/`: the result file, `<import id>-<name>.result.<ext>` in the partner's layout; for a
  file that could not be read, `<name>.error.txt` saying why, in Russian and English.
* `done/`: the imported (or refused) file, kept as `<import time>-<name>`.

The folders are looked at by polling, not inotify: shared folders (SMB, NFS) that partners'
systems write to often raise no events.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from adapters.partner_files.config import Partner
from adapters.partner_files.importing import result_in, safe_name
from adapters.partner_files.readers import FileProblem
from adapters.partner_files.service import Imports

log = logging.getLogger(__name__)

FOLDERS = ("in", "processing", "out", "done")


class DropFolders:
    """Watches every partner's `in/` folder and imports what settles there."""

    def __init__(self, imports: Imports) -> None:
        self.imports = imports
        self.root = imports.root / "drop"
        self._seen: dict[Path, tuple[int, int]] = {}
        self.last_look_at: datetime | None = None
        self.last_error: str | None = None

    def folder(self, partner: Partner, name: str) -> Path:
        return self.root / partner.id / name

    def prepare(self) -> None:
        for partner in self.imports.config.partners:
            for name in FOLDERS:
                self.folder(partner, name).mkdir(parents=True, exist_ok=True)

    async def run(self, _host: Any = None) -> None:
        """The background task: the files left in `processing/`, then a look every poll."""
        await asyncio.to_thread(self.prepare)  # again: a folder deleted meanwhile comes back
        for partner in self.imports.config.partners:
            for left in await asyncio.to_thread(_files, self.folder(partner, "processing")):
                log.info("drop folder %s: importing %s again (left by a stop)", partner.id, left.name)
                await self._import(partner, left, left.name.split("-", 1)[-1])
        while True:
            await self.look()
            await asyncio.sleep(self.imports.config.drop_poll_seconds)

    async def look(self) -> int:
        """One look at every `in/` folder; how many files were taken."""
        taken = 0
        seen: dict[Path, tuple[int, int]] = {}
        try:
            for partner in self.imports.config.partners:
                for path in await asyncio.to_thread(_files, self.folder(partner, "in")):
                    try:
                        stat = path.stat()
                    except FileNotFoundError:
                        continue
                    now = (stat.st_size, stat.st_mtime_ns)
                    if self._seen.get(path) == now and stat.st_size > 0:
                        taken += await self._take(partner, path)
                    else:
                        seen[path] = now
            self.last_error = None
        except OSError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("drop folders: %s", self.last_error)
        self._seen = seen
        self.last_look_at = datetime.now(UTC)
        return taken

    async def _take(self, partner: Partner, path: Path) -> int:
        stamp = self.imports.host.clock().strftime("%Y%m%dT%H%M%S")
        claimed = self.folder(partner, "processing") / f"{stamp}-{safe_name(path.name)}"
        try:
            await asyncio.to_thread(os.rename, path, claimed)
        except FileNotFoundError:  # another gateway process took it first
            return 0
        await self._import(partner, claimed, path.name)
        return 1

    async def _import(self, partner: Partner, claimed: Path, name: str) -> None:
        imports = self.imports
        out = self.folder(partner, "out")
        try:
            layout = imports.layout_of(partner, None)
            await imports.take(
                claimed, name, partner, layout, "drop", f"drop/{partner.id}", result_in(out, name)
            )
        except FileProblem as exc:
            await self._refused(out, name, exc.message_ru, exc.message_en)
            log.info("drop folder %s: %s refused: %s", partner.id, name, exc.message_en)
        except (SQLAlchemyError, OSError):
            raise  # the database or the disk: the file stays in processing/ and is tried again
        except Exception as exc:  # a file that trips a fault of ours must not stop the folder
            log.exception("drop folder %s: %s could not be imported", partner.id, name)
            await self._refused(
                out, name, "не удалось обработать файл", f"internal error: {type(exc).__name__}"
            )
        await asyncio.to_thread(os.replace, claimed, self.folder(partner, "done") / claimed.name)

    async def _refused(self, out: Path, name: str, why_ru: str, why_en: str) -> None:
        text = f"{name}: файл не принят. {why_ru}\n{name}: the file was refused: {why_en}\n"
        await asyncio.to_thread((out / f"{safe_name(name)}.error.txt").write_text, text, encoding="utf-8")

    def health(self) -> dict[str, Any]:
        return {
            "drop_folder": str(self.root),
            "last_look_at": self.last_look_at.isoformat() if self.last_look_at else None,
            "drop_error": self.last_error,
        }


def _files(folder: Path) -> list[Path]:
    """The files waiting in `folder` (not dot-files, not folders), oldest name first."""
    with os.scandir(folder) as entries:
        return sorted(
            Path(e.path) for e in entries if not e.name.startswith(".") and e.is_file(follow_symlinks=False)
        )
