"""The watched folder of head-end files inside `meter-gateway run` (declared as a channel).

Every `[xml80020] poll_seconds` the gateway looks at `watch_dir` for `*.xml` files whose size has
not changed since the last look (a file still being copied is left alone), imports each
(adapters/meters/xml80020/importing.py), and moves it to `done/` or, when it could not be read
at all, to `failed/`, with its report beside it as `<name>.report.txt`. A name already taken
there gets the import's number in front. `/healthz` shows the folder's state under `xml80020`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import Counter

from adapters.meters.xml80020.config import Xml80020Config
from adapters.meters.xml80020.importing import FileReport, import_file

if TYPE_CHECKING:
    from gateway.host import Host

log = logging.getLogger(__name__)


class Folder:
    """One watched folder: what it imported, what it is waiting for."""

    def __init__(self, host: Host, config: Xml80020Config) -> None:
        assert config.watch_dir is not None
        self.host = host
        self.config = config
        self.dir = Path(config.watch_dir)
        self.sizes: dict[Path, int] = {}  # sizes seen at the last look, of files not taken yet
        self.sizes_now: dict[Path, int] = {}  # sizes at this look
        self.stuck: dict[Path, int] = {}  # files that could not be taken, at the size they had
        self.imported = 0
        self.failed = 0
        self.last_file: str | None = None
        self.last_at: datetime | None = None
        self.last_error: str | None = None
        self.files = Counter(
            "gateway_xml80020_files_total",
            "XML 80020/80040 files taken from the watched folder, by result: imported, failed",
            ["result"],
            registry=host.metrics.registry,
        )
        self.values = Counter(
            "gateway_xml80020_values_total",
            "Values of imported XML 80020/80040 files by outcome: stored, unchanged, conflict, refused, skipped",
            ["outcome"],
            registry=host.metrics.registry,
        )

    def ready(self) -> list[Path]:
        """Files whose size is what it was at the last look (not being written any more)."""
        # A link is not followed (as in the partners' drop folders): whoever may write here must
        # not make the gateway read, then move away, a file from elsewhere.
        now = {
            p: p.stat().st_size
            for p in self.dir.iterdir()
            if p.suffix.lower() == ".xml" and not p.is_symlink() and p.is_file()
        }
        ready = [p for p, size in sorted(now.items()) if self.sizes.get(p) == size]
        self.sizes = {p: s for p, s in now.items() if p not in ready}
        self.sizes_now = now
        self.stuck = {p: s for p, s in self.stuck.items() if p in now}
        return ready

    async def take(self, path: Path) -> FileReport:
        report = await import_file(
            self.host.engine,
            self.config,
            path,
            via="folder",
            clock=self.host.clock,
            # a meter without max_power_kw in the registry: the devices' rules' default
            default_max_power_kw=self.host.config.validation.devices.default_max_power_kw,
        )
        name = await asyncio.to_thread(
            _put_away,
            path,
            self.dir / ("failed" if report.error else "done"),
            report.import_id,
            report.text(),
        )
        self.last_file, self.last_at = name, self.host.clock()
        if report.error:
            self.failed += 1
            self.files.labels("failed").inc()
        else:
            self.imported += 1
            self.files.labels("imported").inc()
            for outcome, n in report.totals().items():
                self.values.labels(outcome).inc(n)
        log.info("xml80020: %s imported (%s)", name, report.text().strip().splitlines()[-1])
        return report

    async def look(self) -> None:
        """Import the files that are ready; a file that cannot be read or moved is left where it
        is and not tried again until its size changes (so it is not imported over and over)."""
        errors = []
        try:
            ready = [
                p for p in await asyncio.to_thread(self.ready) if self.stuck.get(p) != self.sizes_now.get(p)
            ]
        except OSError as exc:  # the folder itself is away: tried again at the next look
            ready, errors = [], [f"cannot read {self.dir}: {exc}"]
        for path in ready:
            try:
                await self.take(path)
            except OSError as exc:
                self.stuck[path] = self.sizes_now.get(path, -1)
                errors.append(f"{path.name}: {exc}")
        self.last_error = errors[-1] if errors else None
        if errors:
            log.warning("xml80020: %s", "; ".join(errors))

    async def run(self, host: Any) -> None:
        try:
            await asyncio.to_thread(self.dir.mkdir, parents=True, exist_ok=True)
        except OSError as exc:  # reported by each look until the folder is there
            log.warning("xml80020: cannot create %s: %s", self.dir, exc)
        while True:
            await self.look()
            await asyncio.sleep(self.config.poll_seconds)

    def health(self) -> dict[str, Any]:
        return {
            "status": "degraded" if self.last_error else "ok",
            "watch_dir": str(self.dir),
            "imported": self.imported,
            "failed": self.failed,
            "waiting": len(self.sizes),
            "last_file": self.last_file,
            "last_at": self.last_at.isoformat() if self.last_at else None,
            "last_error": self.last_error,
        }


def _put_away(path: Path, target: Path, import_id: int | None, report: str) -> str:
    """Move an imported file to `target` with its report beside it; the name it got there."""
    target.mkdir(exist_ok=True)
    name = path.name if not (target / path.name).exists() else f"{import_id}-{path.name}"
    path.rename(target / name)
    (target / f"{name}.report.txt").write_text(report, encoding="utf-8")
    return name


def install(host: Host, app: web.Application) -> None:
    """Watch `[xml80020] watch_dir`; nothing when it is not set (`import 80020` works without it)."""
    config = host.config.section("xml80020", Xml80020Config)
    if config.watch_dir is None:
        return
    folder = Folder(host, config)
    host.background.append(folder.run)
    host.health_probes["xml80020"] = folder.health
    app[XML80020_FOLDER] = folder


XML80020_FOLDER = web.AppKey("xml80020_folder", Folder)
