"""Partners' files hold more than readings (payers' names and addresses in registries), so the
gateway keeps its copies of them no longer than residents' raw messages: every
`privacy.purge_interval_seconds`, files older than `privacy.payload_retention_days` are deleted
from `[files] dir`'s `results/` and from each drop folder's `out/` and `done/`. What was decided
stays in the database (the readings, their verdicts, `partner_imports`)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from gateway.host import Host

log = logging.getLogger(__name__)


def old_files(root: Path, older_than: float) -> list[Path]:
    """The kept copies under `root` last changed before `older_than` (a Unix time)."""
    folders = [root / "results", *(p / name for p in (root / "drop").glob("*") for name in ("out", "done"))]
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for e in entries:
                if e.is_file(follow_symlinks=False) and e.stat().st_mtime < older_than:
                    found.append(Path(e.path))
    return found


def purge(root: Path, older_than: float) -> int:
    gone = 0
    for path in old_files(root, older_than):
        path.unlink(missing_ok=True)
        gone += 1
    return gone


async def purge_partner_files(host: Host, root: Path) -> None:
    """The background job (see the module's opening)."""
    privacy = host.config.privacy
    while True:
        older_than = time.time() - privacy.payload_retention_days * 86400
        gone = await asyncio.to_thread(purge, root, older_than)
        if gone:
            log.info(
                "partners' files: deleted %d files older than %d days", gone, privacy.payload_retention_days
            )
        await asyncio.sleep(privacy.purge_interval_seconds)
