"""What every benchmark here shares: free ports, percentiles, the PostgreSQL it may borrow."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
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

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

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


def helper_server(name: str, module_args: list[str], log: Path, health: str = "/healthz") -> Server:
    """A server of the benchmarks' own (a bare baseline, a fake API): `python -m <module_args>
    --port <a free port>`."""
    port = free_port()
    return Server(name, [sys.executable, "-m", *module_args, "--port", str(port)], port, log, health=health)


def gateway_server(name: str, config: Path, port: int, log: Path) -> Server:
    """`meter-gateway run` with the benchmark's configuration (which says `port`)."""
    return Server(name, [str(BIN / "meter-gateway"), "run", "--config", str(config)], port, log)


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


@contextmanager
def scratch_postgres(name: str) -> Iterator[str]:
    """A new, empty database `name` on the borrowed PostgreSQL for the length of the block (its
    URL is given), dropped afterwards."""
    pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def own_cpu_seconds() -> float:
    """User + system CPU time this process (a load client) has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def latency_ms(latencies: list[float]) -> dict[str, float]:
    """p50 and p99 of request latencies given in seconds, in milliseconds, as the reports print them."""
    return {"p50_ms": percentile(latencies, 0.50) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000}


@dataclass
class Tally:
    """What the requests of a load client's measuring window came to."""

    requests: int = 0
    ok: int = 0  # answered as a working gateway answers (or anything, unchecked)
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    other: dict[str, int] = field(default_factory=dict)  # other answers, by their first characters


Send = Callable[[], Awaitable[tuple[int, bytes]]]  # one request: its HTTP status and body


async def timed_requests(
    send: Send, answered_ok: Callable[[bytes], bool], window: tuple[float, float], tally: Tally, check: bool
) -> None:
    """One connection's loop: `send` one request after another until the window closes; only
    requests sent and answered inside it are counted (warm-up before it)."""
    start, end = window
    while True:
        sent_at = time.perf_counter()
        if sent_at >= end:
            return
        try:
            status, body = await send()
        except Exception:
            tally.errors += 1
            await asyncio.sleep(0.05)
            continue
        done = time.perf_counter()
        if not start <= sent_at or done > end:
            continue
        tally.requests += 1
        tally.latencies.append(done - sent_at)
        if status != 200:
            tally.errors += 1
            key = f"HTTP {status}"
        elif not check or answered_ok(body):
            tally.ok += 1
            continue
        else:
            key = body[:60].decode(errors="replace")
        tally.other[key] = tally.other.get(key, 0) + 1


async def run_timed_clients(
    connections: int,
    duration: float,
    warmup: float,
    workers: Callable[[aiohttp.ClientSession, tuple[float, float], Tally], list[Awaitable[None]]],
) -> dict[str, Any]:
    """Run `workers(http, window, tally)` (each a `timed_requests` loop) over one HTTP session
    of `connections`; the figures of the window as the channel benchmarks report them."""
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=connections)
    cpu0 = own_cpu_seconds()
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        now = time.perf_counter()
        await asyncio.gather(*workers(http, (now + warmup, now + warmup + duration), tally))
    cpu = own_cpu_seconds() - cpu0
    return {
        "requests": tally.requests,
        "ok": tally.ok,
        "errors": tally.errors,
        "other": tally.other,
        "per_s": tally.requests / duration,
        **latency_ms(tally.latencies),
        "client_cpu": cpu / (duration + warmup),
    }


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


ChannelClient = Callable[[str, int, int, float, float, bool], Coroutine[Any, Any, dict[str, Any]]]


def channel_client_main(
    module: str, units: str, default_units: int, run_client: ChannelClient, argv: list[str]
) -> int:
    """The `client` subcommand of a channel benchmark (`--url --connections --<units> --duration
    [--no-check]`): `run_client(url, connections, units, duration, warm-up, check)` in this
    process, its figures printed as one JSON line."""
    p = argparse.ArgumentParser(prog=f"python -m {module} client")
    p.add_argument("--url", required=True)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument(f"--{units}", type=int, default=default_units)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--no-check", action="store_true")
    a = p.parse_args(argv)
    result = asyncio.run(run_client(a.url, a.connections, getattr(a, units), a.duration, 1.0, not a.no_check))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


def channel_client_phase(
    module: str, route: str, units: str, args: argparse.Namespace, server: Server, check: bool
) -> dict[str, Any]:
    """Run `python -m <module> client` against `server` with the benchmark's own arguments."""
    cmd = [
        sys.executable,
        "-m",
        module,
        "client",
        "--url",
        f"http://127.0.0.1:{server.port}{route}",
        "--connections",
        str(args.connections),
        f"--{units}",
        str(getattr(args, units)),
        "--duration",
        str(args.duration),
    ]
    if not check:
        cmd.append("--no-check")
    return run_load_client(cmd, server, args.duration)


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
