"""What every benchmark here shares: free ports, percentiles, the PostgreSQL it may borrow."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

PG_ADMIN_URL = os.environ.get("MG_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def clean_env() -> dict[str, str]:
    """This environment without GATEWAY_* variables: a benchmark's server reads only its own TOML."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}


@dataclass
class Server:
    """A server process on a loopback port; stopped with SIGTERM, killed if it does not exit."""

    name: str
    command: list[str]
    port: int
    log: Path
    cwd: Path = ROOT
    health: str = "/healthz"
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=log, env=clean_env(), cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log: {self.log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.health}", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {self.health} in {timeout:g} s; log: {self.log}")

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
            return str(r.read().decode())

    def get_json(self, path: str) -> Any:
        return orjson.loads(self.get(path))

    def metrics(self) -> str:
        return self.get("/metrics")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def pg_admin(sql: str) -> None:
    """Run one statement (CREATE/DROP DATABASE) on the admin database, outside a transaction."""

    async def go() -> None:
        from sqlalchemy import text

        from gateway.store.database import create_engine

        engine = create_engine(PG_ADMIN_URL)
        try:
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(go())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and of every process under it (Linux /proc):
    the gateway's SQLite writer runs in a process of its own, and it counts as the server's."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent pid, CPU seconds)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        stats[int(entry.name)] = (
            int(fields[1]),
            (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"),
        )
    if pid not in stats:
        return float("nan")
    children: dict[int, list[int]] = {}
    for child, (parent, _) in stats.items():
        children.setdefault(parent, []).append(child)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats[p][1]
        todo.extend(children.get(p, ()))
    return total


def run_load_client(cmd: list[str], server: Server, duration: float) -> dict[str, Any]:
    """Run a load client process against `server`; its last JSON line plus the server's CPU share."""
    assert server.proc is not None
    cpu0 = cpu_seconds(server.proc.pid)
    out = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"load client failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = orjson.loads(out.stdout.strip().splitlines()[-1])
    result["server_cpu"] = (cpu_seconds(server.proc.pid) - cpu0) / (duration + 1.0)
    return result


def count_rows(db_url: str, table_name: str, accepted_only: bool = False) -> int:
    """Rows of a gateway table (accepted readings only, if asked): what the benchmark really stored."""

    async def go() -> int:
        from sqlalchemy import func, select

        from gateway.store.database import create_engine
        from gateway.store.schema import metadata

        table = metadata.tables[table_name]
        query = select(func.count()).select_from(table)
        if accepted_only:
            query = query.where(table.c.verdict == "accepted")
        engine = create_engine(db_url)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(query)).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(go())


def write_gateway_config(path: Path, db_url: str, port: int, sections: str) -> None:
    """A benchmark gateway's TOML: its database, loopback HTTP on `port`, then `sections`."""
    path.write_text(
        f'[database]\nurl = "{db_url}"\n\n[http]\nhost = "127.0.0.1"\nport = {port}\n\n{sections}',
        encoding="utf-8",
    )
