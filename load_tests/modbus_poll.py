"""Modbus polling benchmark: `.venv/bin/python -m load_tests.modbus_poll`.

TCP: 1,000 simulated meters (Eastron SDM120 register maps, one pymodbus TCP server each, all in
a separate server process so their CPU is not counted against the poller) are polled:

1. by a bare pymodbus loop: one AsyncModbusTcpClient per meter reading the same blocks, as many
   at once as the poller allows, nothing decoded or stored (the baseline);
2. by the poller (adapters.meters.poller.BusWorker) with the intake stubbed out: read plan,
   timeouts, error accounting, decoding, zone mapping, building the submission;
3. by the poller with the real intake on SQLite (validation, group commit, durable storage).

Each reports the time of one cycle over all meters and the CPU seconds the polling process
used for it, after a first cycle that opens the connections.

Serial lines (Modbus RTU and the other protocols) are measured against the wire on a paced line
by load_tests/meters_wire.py.

Prints a table and one JSON line. Bounded in time and traffic; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from adapters.meters.config import ModbusBusConfig, ModbusConfig
from adapters.meters.profiles import DEFAULT_DIR
from gateway.config import load_config
from gateway.model import Status, Submission, Verdict

PROFILE = "eastron_sdm120"
ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- server process


async def _serve_tcp(count: int) -> None:
    from adapters.meters.profiles import load_profiles
    from adapters.meters.simulator import SimulatedBus, SimulatedMeter

    profile = load_profiles(DEFAULT_DIR)[PROFILE]
    buses = []
    ports = []
    for i in range(count):
        bus = SimulatedBus([SimulatedMeter(profile, 1, {"import_total": 1000 + i, "serial": 50000000 + i})])
        ports.append(await bus.start_tcp("127.0.0.1", 0))
        buses.append(bus)
    print(json.dumps({"ports": ports}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    """A simulator process of this module; it runs until its standard input is closed."""
    return subprocess.Popen(
        [sys.executable, "-m", "load_tests.modbus_poll", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- measuring


class _StubIntake:
    async def submit(self, sub: Submission) -> Verdict:
        return Verdict(Status.ACCEPTED, (), None)


async def _poller_cycle(worker: Any, concurrency: int, writer_pid: int | None) -> tuple[float, float]:
    """One polling cycle: wall time, and CPU of this process plus the intake's writer process."""
    sem = asyncio.Semaphore(concurrency)

    async def one(m: Any) -> None:
        async with sem:
            await worker.poll_meter(m)

    def cpu() -> float:
        return time.process_time() + (_cpu_of(writer_pid) if writer_pid else 0.0)

    cpu0, wall = cpu(), time.perf_counter()
    await asyncio.gather(*(one(m) for m in worker.meters))
    return time.perf_counter() - wall, cpu() - cpu0


async def _bare_cycle(
    clients: list[Any], blocks: list[tuple[int, int, int]], concurrency: int
) -> tuple[float, float]:
    sem = asyncio.Semaphore(concurrency)
    failures = 0

    async def one(client: Any) -> None:
        nonlocal failures
        async with sem:
            for fc, address, count in blocks:
                if fc == 3:
                    reply = await client.read_holding_registers(address, count=count, device_id=1)
                else:
                    reply = await client.read_input_registers(address, count=count, device_id=1)
                failures += reply.isError()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(c) for c in clients))
    assert failures == 0
    return time.perf_counter() - wall, time.process_time() - cpu


def _registry_csv(path: Path, count: int) -> None:
    lines = ["account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address"]
    lines += [f"{7000000 + i},LT-{i:05d},SDM120,T,7,,15,load test {i}" for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def bench_tcp(count: int, cycles: int, concurrency: int) -> dict[str, Any]:
    from pymodbus.client import AsyncModbusTcpClient

    from adapters.meters.poller import BusWorker, ModbusPoller, load_modbus_profiles, read_plan
    from gateway.calendar import WorkCalendar
    from gateway.intake import Intake
    from gateway.metrics import Metrics
    from gateway.registry import import_registry
    from gateway.store.database import create_engine
    from gateway.store.migrate import upgrade

    server = _spawn(["--serve-tcp", str(count)])
    assert server.stdout is not None and server.stdin is not None
    try:
        ports = json.loads(server.stdout.readline())["ports"]
        tmp = Path(tempfile.mkdtemp(prefix="modbus-bench-"))
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        config = load_config(None, {"GATEWAY_DATABASE_URL": url})
        engine = create_engine(url)
        await upgrade(engine)
        _registry_csv(tmp / "registry.csv", count)
        await import_registry(engine, tmp / "registry.csv")
        bus = ModbusBusConfig(
            name="bench",
            transport="tcp",
            meters=[
                {"unit": 1, "serial": f"LT-{i:05d}", "profile": PROFILE, "host": "127.0.0.1", "port": p}
                for i, p in enumerate(ports)
            ],
            max_concurrency=concurrency,
            latency_ms=2000,
        )
        modbus = ModbusConfig(buses=[bus])
        profiles = load_modbus_profiles(modbus)
        blocks = [(b.function, b.address, b.count) for b in read_plan(profiles[PROFILE])]
        metrics = Metrics()
        calendar = WorkCalendar(config.calendar.timezone, None)
        intake = Intake(engine, config, calendar, metrics, lambda: datetime.now(UTC))
        await intake.start()
        out: dict[str, Any] = {"meters": count, "requests_per_meter": len(blocks), "concurrency": concurrency}

        # 1. bare pymodbus
        clients = [AsyncModbusTcpClient("127.0.0.1", port=p, retries=0, reconnect_delay=0) for p in ports]
        await asyncio.gather(*(c.connect() for c in clients))
        server_cpu0 = _cpu_of(server.pid)
        bare = [await _bare_cycle(clients, blocks, concurrency) for _ in range(cycles + 1)][1:]
        out["bare_server_cpu_per_cycle"] = (_cpu_of(server.pid) - server_cpu0) / (cycles + 1)
        for c in clients:
            c.close()

        # 2. and 3. the poller, stub intake then the real one
        for label, submit in (("poller_stub_intake", _StubIntake()), ("poller_sqlite_intake", intake)):
            gw = SimpleNamespace(
                engine=engine, clock=lambda: datetime.now(UTC), metrics=Metrics(), intake=submit
            )
            poller = ModbusPoller(gw, modbus, profiles)  # type: ignore[arg-type]
            worker = BusWorker(poller, bus)
            # The SQLite intake decides in a process of its own: its CPU counts as the poller's.
            writer = intake._process.pid if submit is intake and intake._process else None
            first = await _poller_cycle(worker, concurrency, writer)
            server_cpu0 = _cpu_of(server.pid)
            runs = [await _poller_cycle(worker, concurrency, writer) for _ in range(cycles)]
            out[f"{label}_server_cpu_per_cycle"] = (_cpu_of(server.pid) - server_cpu0) / cycles
            failing = [m.address for m in worker.meters if m.status != "ok"]
            out[label] = _summary(runs) | {"first_cycle_s": round(first[0], 3), "meters_not_ok": len(failing)}
            for link in worker.links.values():
                link.close()
        out["bare_pymodbus"] = _summary(bare)
        await intake.stop()
        await engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
        return out
    finally:
        server.stdin.close()
        server.wait(10)


def _summary(runs: list[tuple[float, float]]) -> dict[str, float]:
    return {
        "cycle_s": round(statistics.median(r[0] for r in runs), 3),
        "cpu_s": round(statistics.median(r[1] for r in runs), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m load_tests.modbus_poll", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--serve-tcp", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if args.serve_tcp:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.serve_tcp + 256)), hard))
        asyncio.run(_serve_tcp(args.serve_tcp))
        return 0
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.meters + 256)), hard))
    tcp = asyncio.run(bench_tcp(args.meters, args.cycles, args.concurrency))
    print(
        f"Modbus TCP: {tcp['meters']} meters x {tcp['requests_per_meter']} requests, {tcp['concurrency']} at once"
    )
    print(f"  {'':28} {'cycle s':>8} {'CPU s':>7} {'server CPU s':>13}")
    for key, server_key in (
        ("bare_pymodbus", "bare_server_cpu_per_cycle"),
        ("poller_stub_intake", "poller_stub_intake_server_cpu_per_cycle"),
        ("poller_sqlite_intake", "poller_sqlite_intake_server_cpu_per_cycle"),
    ):
        row = tcp[key]
        print(f"  {key:28} {row['cycle_s']:>8.3f} {row['cpu_s']:>7.3f} {tcp[server_key]:>13.3f}")
    print(json.dumps({"modbus_tcp": tcp}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
