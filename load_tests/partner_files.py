"""How fast a partner's file goes in, and that its memory stays flat: `meter-gateway import
readings` (the real command, a process of its own) on files of the `payment-agent-csv` layout.

```sh
.venv/bin/python -m load_tests.partner_files                 # 20,000 and 100,000 rows, SQLite and PostgreSQL
.venv/bin/python -m load_tests files --postgres no           # the same through `make bench`'s entry, SQLite only
```

The registry has `--meters` single-rate meters; row i reads meter i mod M on day i div M (noon,
counted back from today), 100 kWh a day more each day, so every row must be accepted (the table
says whether it was). The import process's resident memory is sampled from /proc every 0.1 s:
its peak for the small and the large file shows memory flat (one chunk of `[files] chunk_rows`
at a time, whatever the file's length). Beside it, baseline (b) of the device benchmark: what
SQLite allows for the same writes (an inbound row, a reading and a state update per reading, 200
per commit) with no Python layer, on a copy of the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from adapters.partner_files.layouts import Cell, load_layouts
from adapters.partner_files.samples import write_sample
from load_tests import raw_sqlite
from load_tests.common import clean_env, count_rows, pg_available, scratch_postgres

BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "meter-gateway"
HEADER = ["НОМЕР_ПЛАТЕЖА", "ДАТА", "ЛС", "ФИО", "СЧЕТЧИК", "ПОКАЗАНИЕ", "ДЕНЬ", "НОЧЬ", "ПОЛУПИК"]


def write_registry(path: Path, meters: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address\n")
        for i in range(meters):
            f.write(f"{5000000 + i},PF-{i:06d},Меркурий 201,T,7,,,ул. Файловая {i}\n")


def rows(count: int, meters: int, first_day: date, offset: int = 0) -> Iterator[list[Cell]]:
    for i in range(offset, offset + count):
        meter, step = i % meters, i // meters
        day = (first_day + timedelta(days=step)).strftime("%d.%m.%Y")
        yield [f"pf-{i}", day, str(5000000 + meter), "Плательщик", "", str(1000 + 100 * step), "", "", ""]


class RssSampler:
    """The peak resident memory of a process, read from /proc while it runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.1)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kb


def run_cli(tmp: Path, db_url: str, *args: str) -> tuple[float, int, str]:
    """Run `meter-gateway ARGS` on `db_url`; (seconds, peak RSS in kB, its output)."""
    env = {**clean_env(), "GATEWAY_DATABASE_URL": db_url, "GATEWAY_FILES_CHUNK_ROWS": "1000"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN), *args], cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    sampler = RssSampler(proc.pid)
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    if proc.returncode not in (0, 1):
        raise RuntimeError(
            f"meter-gateway {' '.join(args)} failed ({proc.returncode}):\n{out}\n{err[-3000:]}"
        )
    return seconds, peak, out


def import_seconds(db_url: str) -> float:
    """How long the last import took by its own record (`partner_imports`), start-up aside."""

    async def go() -> float:
        from sqlalchemy import select

        from adapters.partner_files.tables import partner_imports
        from gateway.store.database import create_engine

        engine = create_engine(db_url)
        try:
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(partner_imports.c.started_at, partner_imports.c.finished_at)
                        .order_by(partner_imports.c.id.desc())
                        .limit(1)
                    )
                ).one()
        finally:
            await engine.dispose()
        return float((row.finished_at - row.started_at).total_seconds())

    return asyncio.run(go())


def bench(tmp: Path, name: str, db_url: str, sizes: list[int], meters: int) -> list[str]:
    layout = load_layouts()["payment-agent-csv"]
    registry = tmp / "registry.csv"
    write_registry(registry, meters)
    seconds, _, _ = run_cli(tmp, db_url, "import", "registry", str(registry))
    lines = [f"{name}: registry of {meters} meters imported in {seconds:.1f} s"]
    first_day = date.today() - timedelta(days=sum(sizes) // meters + 2)
    offset = 0
    for size in sizes:
        path = write_sample(tmp / f"reestr-{size}.csv", layout, HEADER, rows(size, meters, first_day, offset))
        accepted_before = count_rows(db_url, "readings", accepted_only=True)
        seconds, peak, out = run_cli(tmp, db_url, "import", "readings", str(path), "--partner", "bench")
        accepted = count_rows(db_url, "readings", accepted_only=True) - accepted_before
        mb = path.stat().st_size / 1e6
        own = import_seconds(db_url)
        lines.append(
            f"  {size:>7,} rows ({mb:.1f} MB CSV): import {own:5.1f} s = {size / own:7,.0f} rows/s "
            f"(the command {seconds:.1f} s with start-up); peak RSS of the import process "
            f"{peak / 1024:4.0f} MB; accepted {accepted:,}/{size:,}"
        )
        if accepted != size:
            lines.append(f"    not all accepted: {out.strip().splitlines()[0]}")
        offset += size
    return lines


def raw_baseline(db_path: Path, seconds: float) -> str:
    copy = db_path.with_name("raw-copy.db")
    with sqlite3.connect(db_path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    bench = raw_sqlite.RawBench(copy)
    try:
        rate = bench.write_set_batched(seconds)
    finally:
        bench.close()
    return f"  raw SQLite, the same writes per reading (inbound + reading + state), 200 per commit: {rate:,.0f} readings/s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m load_tests.partner_files", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 100_000], help="file sizes, in rows")
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--postgres", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--raw-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="mg-bench-files-"))
    report = ["partners' files: meter-gateway import readings, layout payment-agent-csv (Windows-1251)"]
    try:
        db_path = tmp / "files.db"
        report += bench(tmp, "SQLite", f"sqlite+aiosqlite:///{db_path}", args.rows, args.meters)
        report.append(raw_baseline(db_path, args.raw_seconds))
        if args.postgres != "no":
            if not pg_available():
                report.append("PostgreSQL: not running on 127.0.0.1:5432, skipped")
            else:
                with scratch_postgres("mg_bench_files") as url:
                    report += bench(tmp, "PostgreSQL", url, args.rows, args.meters)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
