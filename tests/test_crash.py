"""A crash never loses an acknowledged reading.

The real gateway runs as a subprocess (`meter-gateway --config FILE run`); twenty concurrent
device clients push single readings and small batches, and the process is killed with SIGKILL
while requests are in flight. After a restart on the same database every item that was answered
`accepted` must be stored exactly once (one inbound row under `<device>:<id>`, one reading row
with the value sent), the meter state must agree with the stored readings, and sending the
acknowledged items again must answer `duplicate: true` with the same receipt and reading id.
Runs on SQLite and on PostgreSQL (the `db_url` fixture).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import select

from gateway.store.database import create_engine
from gateway.store.schema import inbound, meter_state, meters, readings

DEVICE_TOKEN = "crash-device-token"
DEVICE_ID = "crash-dev"
METERS = 50
WORKERS = 20
LOAD_SECONDS = 1.5
STEP = timedelta(minutes=15)  # between two readings of one meter: 15 kW x 0.25 h + 1 = 4.75 kWh allowed
INCREMENT = 3  # kWh per step, well inside the permitted power
START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serial(i: int) -> str:
    return f"CR-{i:04d}"


def _write_config(tmp_path: Path, db_url: str, port: int) -> Path:
    registry = tmp_path / "crash-registry.csv"
    lines = ["account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address"]
    lines += [f"{3000000 + i},{_serial(i)},Меркурий 201,T,7,,,ул. Крашевая {i}" for i in range(1, METERS + 1)]
    registry.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = tmp_path / "crash-gateway.toml"
    config.write_text(
        f"""
[database]
url = "{db_url}"

[http]
host = "127.0.0.1"
port = {port}
shutdown_timeout_seconds = 2

[devices]
tokens = ["{DEVICE_TOKEN}"]

[registry]
csv = "{registry.as_posix()}"
""",
        encoding="utf-8",
    )
    return config


class GatewayProcess:
    """`meter-gateway --config FILE run` as a child process, its log in a file for diagnosis."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config = config
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def _command(self) -> list[str]:
        script = Path(sys.executable).with_name("meter-gateway")
        if script.exists():
            return [str(script), "--config", str(self.config), "run"]
        return [sys.executable, "-m", "gateway", "--config", str(self.config), "run"]

    def spawn(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        with open(self.log, "ab") as log:
            return subprocess.Popen(self._command(), stdout=log, stderr=log, env=env, cwd=self.config.parent)

    async def start(self, http: aiohttp.ClientSession) -> None:
        """Start the gateway and wait until /healthz answers 200."""
        self.proc = self.spawn()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the gateway exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                async with http.get(self.base + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"the gateway did not answer /healthz in {START_TIMEOUT:g} s:\n{self.tail()}")

    def kill(self) -> list[int]:
        """SIGKILL: no shutdown handler, no drain, no flush. Returns the processes the gateway
        had started (the SQLite writer and its fork server), which are not killed with it."""
        assert self.proc is not None
        children = _descendants(self.proc.pid)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        return children

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def tail(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return "(no log)"


@dataclass
class Acked:
    """An item the gateway answered `accepted`: what was sent and what it said."""

    item: dict[str, Any]
    receipt: int
    reading_id: int


@dataclass
class Load:
    base_time: datetime
    acked: dict[str, Acked] = field(default_factory=dict)  # item id -> answer
    steps: dict[str, int] = field(default_factory=dict)  # meter serial -> next step never sent
    in_flight: int = 0
    requests_answered: int = 0
    killed: bool = False
    problems: list[str] = field(default_factory=list)

    def next_item(self, worker: int, serial: str) -> dict[str, Any]:
        k = self.steps.get(serial, 0)
        self.steps[serial] = k + 1
        return {
            "id": f"w{worker}-{serial}-{k}",
            "meter": serial,
            "taken_at": (self.base_time + k * STEP).isoformat().replace("+00:00", "Z"),
            "value": str(1000 + INCREMENT * k),
        }


async def _post(http: aiohttp.ClientSession, base: str, items: list[dict[str, Any]]) -> Any:
    async with http.post(
        base + "/api/v1/readings",
        json={"readings": items},
        headers={"Authorization": f"Bearer {DEVICE_TOKEN}", "X-Device-Id": DEVICE_ID},
    ) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 200, (resp.status, body)
        return body


async def _worker(w: int, http: aiohttp.ClientSession, base: str, load: Load) -> None:
    """Pushes readings of the meters it owns, in order, one request at a time."""
    own = [_serial(i) for i in range(1, METERS + 1) if i % WORKERS == w]
    rng = random.Random(w)
    turn = 0
    while not load.killed:
        size = 1 if rng.random() < 0.5 else rng.randint(2, 8)
        items = []
        for _ in range(size):
            items.append(load.next_item(w, own[turn % len(own)]))
            turn += 1
        load.in_flight += 1
        try:
            body = await _post(http, base, items)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if not load.killed:
                load.problems.append(f"worker {w}: {exc!r} before the kill")
            return
        finally:
            load.in_flight -= 1
        load.requests_answered += 1
        for item, result in zip(items, body["results"], strict=True):
            if result["status"] != "accepted" or result["duplicate"]:
                load.problems.append(f"{item} answered {result}")
                continue
            load.acked[item["id"]] = Acked(item, result["receipt"], result["readings"][0]["reading_id"])


async def _stored(db_url: str) -> tuple[Sequence[Any], Sequence[Any], dict[int, str], dict[str, Any]]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            inbound_rows = (
                await conn.execute(
                    select(inbound.c.id, inbound.c.channel, inbound.c.channel_message_id, inbound.c.response)
                )
            ).all()
            reading_rows = (
                await conn.execute(
                    select(
                        readings.c.id,
                        readings.c.inbound_id,
                        readings.c.meter_id,
                        readings.c.zone,
                        readings.c.value,
                        readings.c.taken_at,
                        readings.c.verdict,
                    )
                )
            ).all()
            serials = {r.id: r.serial for r in (await conn.execute(select(meters.c.id, meters.c.serial)))}
            states = {
                serials[r.meter_id]: r
                for r in (
                    await conn.execute(
                        select(meter_state.c.meter_id, meter_state.c.last_value, meter_state.c.last_receipt)
                    )
                )
            }
    finally:
        await engine.dispose()
    return inbound_rows, reading_rows, serials, states


async def test_kill_9_loses_no_acknowledged_reading(db_url: str, tmp_path: Path) -> None:
    port = _free_port()
    config = _write_config(tmp_path, db_url, port)
    gateway = GatewayProcess(config, port, tmp_path / "gateway.log")
    now = datetime.now(UTC).replace(microsecond=0)
    load = Load(base_time=now - timedelta(days=40))
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=WORKERS + 4)
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            # 1. Load, then SIGKILL while requests are in flight.
            await gateway.start(http)
            workers = [asyncio.create_task(_worker(w, http, gateway.base, load)) for w in range(WORKERS)]
            await asyncio.sleep(LOAD_SECONDS)
            in_flight_at_kill = load.in_flight
            load.killed = True
            left_behind = gateway.kill()
            await asyncio.wait_for(asyncio.gather(*workers), timeout=30)
            assert not load.problems, load.problems[:5]
            assert load.requests_answered > 50, f"only {load.requests_answered} requests were answered"
            assert in_flight_at_kill > 0, "no request was in flight when the gateway was killed"
            acked = dict(load.acked)

            # The writer process finishes the group in hand and exits when its pipe closes: none
            # of the gateway's processes outlives it, holding the database.
            if db_url.startswith("sqlite"):
                assert left_behind, "the SQLite gateway runs no writer process"
            assert _gone(left_behind, timeout=15), "processes outlived the killed gateway"

            # 2. Restart on the same database.
            await gateway.start(http)

            # 3. Every acknowledged reading is stored, exactly once.
            inbound_rows, reading_rows, serials, states = await _stored(db_url)
            by_message = Counter((r.channel, r.channel_message_id) for r in inbound_rows)
            repeated = [k for k, n in by_message.items() if n > 1]
            assert not repeated, f"inbound messages stored twice: {repeated[:5]}"
            inbound_by_key = {r.channel_message_id: r for r in inbound_rows if r.channel == "device"}
            readings_by_inbound: dict[int, list[Any]] = {}
            for r in reading_rows:
                readings_by_inbound.setdefault(r.inbound_id, []).append(r)
            same_sample = Counter((r.meter_id, r.zone, r.taken_at) for r in reading_rows)
            assert max(same_sample.values(), default=1) == 1, "one meter sample stored as two readings"
            for item_id, a in acked.items():
                row = inbound_by_key.get(f"{DEVICE_ID}:{item_id}")
                assert row is not None, f"acknowledged {a.item} is not stored after the crash"
                assert row.id == a.receipt, (a.item, row.id, a.receipt)
                stored = readings_by_inbound.get(row.id, [])
                assert len(stored) == 1, (a.item, stored)
                (reading,) = stored
                assert reading.id == a.reading_id
                assert serials[reading.meter_id] == a.item["meter"]
                assert (reading.zone, Decimal(reading.value)) == ("T", Decimal(a.item["value"]))
                assert reading.taken_at == datetime.fromisoformat(a.item["taken_at"].replace("Z", "+00:00"))
                assert reading.verdict == "accepted"
            # Every stored reading came with its inbound message, and the meter state (written in
            # the same transaction) is the last stored reading: nothing half-committed survived.
            assert {r.inbound_id for r in reading_rows} <= {r.id for r in inbound_rows}
            last_stored: dict[str, Any] = {}
            for r in reading_rows:
                serial = serials[r.meter_id]
                if r.verdict == "accepted" and (
                    serial not in last_stored or r.taken_at > last_stored[serial].taken_at
                ):
                    last_stored[serial] = r
            for serial, r in last_stored.items():
                assert Decimal(states[serial].last_value) == Decimal(r.value), (serial, states[serial], r)
                assert states[serial].last_receipt == r.inbound_id
            acked_meters = {a.item["meter"] for a in acked.values()}
            assert acked_meters <= set(last_stored)

            # 4. Re-sending the acknowledged items answers duplicate with the same receipt.
            items = [a.item for a in acked.values()]
            for start in range(0, len(items), 200):
                chunk = items[start : start + 200]
                body = await _post(http, gateway.base, chunk)
                for item, result in zip(chunk, body["results"], strict=True):
                    a = acked[item["id"]]
                    assert result["duplicate"] is True, (item, result)
                    assert result["status"] == "accepted", (item, result)
                    assert result["receipt"] == a.receipt, (item, result, a.receipt)
                    assert result["readings"][0]["reading_id"] == a.reading_id, (item, result)

            # 5. The restarted gateway goes on deciding against the recovered state.
            fresh = [load.next_item(99, _serial(i)) for i in range(1, METERS + 1)]
            body = await _post(http, gateway.base, fresh)
            assert body["accepted"] == METERS, body["results"][:3]
            print(
                f"\n{db_url.split(':')[0]}: {load.requests_answered} requests answered, "
                f"{len(acked)} readings acknowledged, {in_flight_at_kill} requests in flight at SIGKILL, "
                f"{len(inbound_rows)} inbound rows after restart"
            )
    finally:
        gateway.stop()


def _descendants(pid: int) -> list[int]:
    """Every process under `pid` (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        children = [child for child, p in parents.items() if p == parent]
        found.extend(children)
        todo.extend(children)
    return found


def _gone(pids: list[int], timeout: float) -> bool:
    """Wait until none of `pids` runs; False if some still do after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
