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
