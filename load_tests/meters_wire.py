"""Meter polling against the wire: `.venv/bin/python -m load_tests.meters_wire`.

For each protocol the gateway reads (Modbus RTU, Mercury, IEC 62056-21 mode C, DLMS/COSEM over
HDLC), one bus of simulated meters on a paced serial line (adapters/meters/paced_line.py: each
byte takes its character time at the port's speed, one direction at a time, as on RS-485) is
polled by the bus worker's own loop (adapters.meters.poller.BusWorker, every meter always due) as
fast as it will go, one meter after another: once with the intake stubbed out (the poller's and
the line's figure) and once with the gateway's intake on a scratch SQLite database (each reading
decided and stored, as in `meter-gateway run`).

The relay and the simulated meters run in a process of their own (`--serve`), as the meters are
hardware of their own. The wire limit is what the line and the meters allow for the very polls
made, with nothing of the poller's own: the time of every character the relay carried (measured,
at the speed of each moment: IEC's sign-on at 300 baud, its readout at 9600), the meters'
turnaround (measured by the relay: from a request's last character reaching them to their answer
beginning: the IEC meter's 20 ms reaction, the DLMS meter's 5 ms, pymodbus' and the Mercury
simulator's processing), the relay's own lateness (the last character of each burst handed on
after its time: the rig is a Python program waking every ~0.1 ms, a line is not; printed in a
column of its own), and the pauses the protocol prescribes to the reading side:
- Modbus RTU: the silent interval (3.5 characters, 1.75 ms above 19200 baud) before each request;
- IEC 62056-21: the 20 ms it waits before its acknowledgement (a meter announcing fast reaction);
- Mercury, DLMS: none.

Prints a table, readings per second per bus against the limit (goal: at least 90 %), and one JSON
line. Loopback and ptys only; about 40 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from adapters.meters.config import ModbusBusConfig, ModbusConfig
from gateway.model import Status, Submission, Verdict

ROOT = Path(__file__).resolve().parent.parent
UNITS = 4  # meters on each bus

# protocol -> (profile, registry zones, the meters' config entries for unit u)
PROTOCOLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "modbus": ("eastron_sdm120", ("T",)),
    "mercury": ("mercury_234", ("T1", "T2")),
    "iec62056-21": ("energomera_ce301", ("T1", "T2")),
    "dlms": ("spodes_single_phase", ("T1", "T2")),
}


def _serial(protocol: str, unit: int) -> str:
    """The serial number the simulated meter `unit` of a protocol answers with."""
    return {
        "modbus": f"{60000000 + unit}",
        "mercury": f"{23400000 + unit}",
        "iec62056-21": f"0092170540{unit:05d}",
        "dlms": f"0481230{unit}",
    }[protocol]


def _meter_config(protocol: str, unit: int) -> dict[str, Any]:
    profile = PROTOCOLS[protocol][0]
    meter: dict[str, Any] = {"unit": unit, "serial": _serial(protocol, unit), "profile": profile}
    if protocol == "iec62056-21":
        meter["device_address"] = str(300 + unit)
    if protocol == "dlms":
        meter |= {"unit": 16 + unit, "password": "12345678"}
    return meter


# --------------------------------------------------------------------------- the meters' process


async def _serve(protocol: str, baudrate: int) -> None:
    from adapters.meters.paced_line import PacedLine
    from adapters.meters.profiles import DEFAULT_DIR, load_profiles

    profiles = load_profiles(DEFAULT_DIR)
    profile = profiles[PROTOCOLS[protocol][0]]
    # IEC 62056-21's 7E1: this machine's ptys refuse parity, so both ends frame the parity bit in
    # software (the bus's software_parity) over 8N1, which is the same 10 bits a character.
    line = await PacedLine().start()
    sim: Any
    if protocol == "modbus":
        from adapters.meters.simulator import SimulatedBus, SimulatedMeter

        sim = SimulatedBus(
            [SimulatedMeter(profile, u, {"serial": int(_serial(protocol, u))}) for u in range(1, UNITS + 1)]
        )
        await sim.start_rtu(line.meter_end, baudrate=baudrate)
    elif protocol == "mercury":
        from adapters.meters.simulator_mercury import SimulatedMercuryLine, SimulatedMercuryMeter

        sim = SimulatedMercuryLine(
            [SimulatedMercuryMeter(u, serial=_serial(protocol, u)) for u in range(1, UNITS + 1)]
        )
        await sim.start_serial(line.meter_end, baudrate=baudrate)
    elif protocol == "iec62056-21":
        from adapters.meters.simulator_iec62056 import SimulatedIecLine, SimulatedIecMeter

        sim = SimulatedIecLine(
            [
                SimulatedIecMeter(
                    profile, device_address=str(300 + u), values={"serial": _serial(protocol, u)}
                )
                for u in range(1, UNITS + 1)
            ],
            parity="E",
        )
        await sim.start_serial(line.meter_end, bytesize=8, parity="N", stopbits=1)
    else:
        from adapters.meters.simulator_dlms import SimulatedDlmsLine, SimulatedDlmsMeter

        sim = SimulatedDlmsLine(
            [
                SimulatedDlmsMeter(profile, physical=16 + u, values={"serial": _serial(protocol, u)})
                for u in range(1, UNITS + 1)
            ]
        )
        await sim.start_serial(line.meter_end, baudrate=baudrate)
    print(json.dumps({"gateway_end": line.gateway_end}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, sys.stdin.readline)
        if not command:
            break
        stats = {
            "busy_s": line.busy_seconds,
            "meter_s": line.meter_seconds,
            "late_s": line.late_seconds,
            "carried": line.carried,
        }
        print(json.dumps(stats), flush=True)
    await sim.stop()
    await line.stop()


# --------------------------------------------------------------------------- the poller's side


class _StubIntake:
    async def submit(self, sub: Submission) -> Verdict:
        return Verdict(Status.ACCEPTED, (), None)


class _Counting:
    """An intake that counts the verdicts it passes on."""

    def __init__(self, intake: Any) -> None:
        self.intake = intake
        self.verdicts = 0

    async def submit(self, sub: Submission) -> Verdict:
        verdict = await self.intake.submit(sub)
        self.verdicts += 1
        return verdict


def _no_registry_for(zones: tuple[str, ...]) -> Any:
    from adapters.meters.store import RegistryMeter

    async def lookup(serial: str) -> RegistryMeter:
        return RegistryMeter(zones, None, None)

    return lookup


async def _nothing(*args: Any) -> None:
    return None


def _prescribed_pauses(protocol: str, baudrate: int, polls: int, requests: int) -> float:
    """Seconds the protocol itself keeps the line idle for these polls (see the module's opening)."""
    if protocol == "modbus":
        from adapters.meters.wire import LineTiming

        return requests * LineTiming(baudrate).silent_interval
    if protocol == "iec62056-21":
        from adapters.meters.protocols.iec62056_21 import REACTION_MIN_FAST_S

        return polls * REACTION_MIN_FAST_S
    return 0.0


def _spawn_meters(protocol: str, baudrate: int) -> subprocess.Popen[bytes]:
    """The paced line and its simulated meters, in a process of their own until stdin closes."""
    return subprocess.Popen(
        [sys.executable, "-m", "load_tests.meters_wire", "--serve", protocol, "--baud", str(baudrate)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )


@contextlib.asynccontextmanager
async def _sqlite_intake(protocol: str) -> AsyncIterator[Any]:
    """The gateway's own intake on a scratch SQLite database whose registry holds the bus's meters."""
    from gateway.calendar import WorkCalendar
    from gateway.config import load_config
    from gateway.intake import Intake
    from gateway.metrics import Metrics
    from gateway.registry import import_registry
    from gateway.store.database import create_engine
    from gateway.store.migrate import upgrade

    tmp = Path(tempfile.mkdtemp(prefix="meters-wire-"))
    url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    engine = create_engine(url)
    try:
        await upgrade(engine)
        zones = ";".join(PROTOCOLS[protocol][1])
        rows = ["account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address"]
        rows += [
            f"{7100000 + u},{_serial(protocol, u)},bench,{zones},7,,15,wire {u}" for u in range(1, UNITS + 1)
        ]
        (tmp / "registry.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        await import_registry(engine, tmp / "registry.csv")
        config = load_config(None, {"GATEWAY_DATABASE_URL": url})
        calendar = WorkCalendar(config.calendar.timezone, None)
        intake = Intake(engine, config, calendar, Metrics(), lambda: datetime.now(UTC))
        await intake.start()
        try:
            yield SimpleNamespace(engine=engine, intake=intake)
        finally:
            await intake.stop()
    finally:
        await engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


async def bench(protocol: str, baudrate: int, seconds: float, intake: str = "stub") -> dict[str, Any]:
    """One bus of one protocol polled for `seconds`; `intake` "stub" (the poller and the line
    alone) or "sqlite" (each reading decided and stored by the gateway's intake, as in `run`)."""
    async with contextlib.AsyncExitStack() as stack:
        real = await stack.enter_async_context(_sqlite_intake(protocol)) if intake == "sqlite" else None
        return await _bench(protocol, baudrate, seconds, real) | {"intake": intake}


async def _bench(protocol: str, baudrate: int, seconds: float, real: Any) -> dict[str, Any]:
    from adapters.meters.poller import BusWorker, ModbusPoller, load_modbus_profiles
    from gateway.metrics import Metrics

    server = _spawn_meters(protocol, baudrate)
    assert server.stdin is not None and server.stdout is not None

    def stats() -> dict[str, Any]:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(b"stats\n")
        server.stdin.flush()
        return dict(json.loads(server.stdout.readline()))

    try:
        device = json.loads(server.stdout.readline())["gateway_end"]
        extra: dict[str, Any] = {"software_parity": True} if protocol == "iec62056-21" else {}
        bus = ModbusBusConfig(
            name=f"wire-{protocol}",
            transport="rtu",
            device=device,
            baudrate=baudrate,
            meters=[_meter_config(protocol, u) for u in range(1, UNITS + 1)],
            latency_ms=50,  # the default: a USB adapter
            interval_seconds=1e-6,  # every meter always due
            **extra,
        )
        modbus = ModbusConfig(buses=[bus])
        profiles = load_modbus_profiles(modbus)
        counting = _Counting(real.intake if real else _StubIntake())
        gw = SimpleNamespace(
            engine=real.engine if real else None,
            clock=lambda: datetime.now(UTC),
            metrics=Metrics(),
            intake=counting,
        )
        poller = ModbusPoller(gw, modbus, profiles)  # type: ignore[arg-type]
        worker = BusWorker(poller, bus)
        if real is None:
            worker._registry_meter = _no_registry_for(PROTOCOLS[protocol][1])  # type: ignore[method-assign]
            worker._remember = _nothing  # type: ignore[method-assign,assignment]  # no database here
        for m in worker.meters:  # the first poll opens the port (and Mercury's channels)
            await worker.poll_meter(m)
        link = worker.meters[0].link
        before, requests0 = stats(), link.stats.requests
        # The bus's own loop (as `run` drives it), every meter always due: one after another as
        # fast as the line goes, each reading handed to the intake while the next is read.
        # It is stopped between two polls, so that every poll counted is whole.
        polls0, verdicts0 = sum(m.polls for m in worker.meters), counting.verdicts
        stopped = asyncio.Event()
        read_meter = worker.read_meter

        async def read_until_the_end(m: Any) -> Any:
            if time.perf_counter() >= deadline:
                stopped.set()
                await asyncio.Event().wait()  # until cancelled
            return await read_meter(m)

        worker.read_meter = read_until_the_end  # type: ignore[method-assign]
        cpu, wall = time.process_time(), time.perf_counter()
        deadline = wall + seconds
        loop_task = asyncio.create_task(worker._run_serial())
        await stopped.wait()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        after, requests = stats(), link.stats.requests - requests0
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        if worker._handing:
            await asyncio.wait(worker._handing)
        polls = sum(m.polls for m in worker.meters) - polls0
        ok = counting.verdicts - verdicts0
        failed = polls - ok
        errors = {m.address: dict(m.errors) for m in worker.meters if m.errors}
        last_errors = sorted({m.last_error for m in worker.meters if m.last_error})
        busy = after["busy_s"] - before["busy_s"]
        meter_s = after["meter_s"] - before["meter_s"]
        late_s = after["late_s"] - before["late_s"]
        limit_s = busy + meter_s + late_s + _prescribed_pauses(protocol, baudrate, polls, requests)
        link.close()
        return {
            "protocol": protocol,
            "baudrate": baudrate,
            "meters": UNITS,
            "polls": polls,
            "failed": failed,
            "requests_per_poll": round(requests / max(polls, 1), 2),
            "bytes_per_poll": round((sum(after["carried"]) - sum(before["carried"])) / max(polls, 1), 1),
            "readings_per_s": round(ok / wall, 2),
            "wire_limit_per_s": round(polls / limit_s, 2) if limit_s else None,
            "of_wire_limit": round(limit_s / wall, 3),
            # the same without the relay's lateness counted with the wire: the rig's imprecision
            # then counts against the gateway (a lower bound of the gateway's share)
            "of_wire_limit_relay_uncounted": round((limit_s - late_s) / wall, 3),
            "line_busy_share": round(busy / wall, 3),
            "meter_ms_per_poll": round(1000 * meter_s / max(polls, 1), 2),
            "relay_late_ms_per_poll": round(1000 * late_s / max(polls, 1), 2),
            "cpu_ms_per_poll": round(1000 * cpu / max(polls, 1), 2),
            "errors": errors,
            "last_errors": last_errors[:3],
        }
    finally:
        server.stdin.close()
        server.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m load_tests.meters_wire", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument(
        "--intake",
        default="stub,sqlite",
        help="stub (the poller and the line), sqlite (the real intake), or both",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if args.serve:
        # The relay keeps time with select(), to the microsecond; the default epoll loop wakes on
        # whole milliseconds, which at 115200 baud is eleven characters late.
        with asyncio.Runner(
            loop_factory=lambda: asyncio.SelectorEventLoop(selectors.SelectSelector())
        ) as runner:
            runner.run(_serve(args.serve, args.baud))
        return 0
    results = []
    for protocol in args.protocols.split(","):
        seconds = args.seconds * (2 if protocol == "iec62056-21" else 1)  # a readout takes a second
        for intake in args.intake.split(","):
            results.append(asyncio.run(bench(protocol, args.baud, seconds, intake)))
    print(f"Polling one bus of {UNITS} simulated meters on a paced line at {args.baud} baud:")
    print(
        f"  {'protocol':14} {'intake':>6} {'readings/s':>10} {'wire limit':>10} {'share':>6} {'bytes/poll':>10} "
        f"{'req/poll':>8} {'CPU ms/poll':>11} {'relay late ms/poll':>18} {'share, late uncounted':>21}"
    )
    for r in results:
        print(
            f"  {r['protocol']:14} {r['intake']:>6} {r['readings_per_s']:>10} {r['wire_limit_per_s']:>10} "
            f"{100 * r['of_wire_limit']:>5.1f}% {r['bytes_per_poll']:>10} {r['requests_per_poll']:>8} "
            f"{r['cpu_ms_per_poll']:>11} {r['relay_late_ms_per_poll']:>18} "
            f"{100 * r['of_wire_limit_relay_uncounted']:>20.1f}%"
        )
    print(json.dumps({"meters_wire": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
