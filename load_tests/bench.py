"""The benchmark run: the real gateway on loopback beside the baselines, one table at the end.

Order of a run (each load phase `--duration` seconds after a one-second warm-up):

1. a registry of `--meters` single-zone meters is imported with `meter-gateway import registry`;
2. raw SQLite baselines on a copy of that database (load_tests/raw_sqlite.py);
3. the bare aiohttp server (load_tests/bare_server.py): batches of 200, then single readings;
4. `meter-gateway --config FILE run` on the SQLite database: batches of 200, then single readings;
5. the same on PostgreSQL (a database `mg_bench` created on 127.0.0.1:5432 and dropped after),
   unless `--postgres no` or PostgreSQL does not answer.

Every server and the load generator (load_tests/client.py) are separate processes, so the client
does not take CPU from the server's event loop inside one interpreter (it still shares the
machine's cores; the table shows both processes' CPU use).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from load_tests import raw_sqlite
from load_tests.client import serial
from load_tests.common import (
    BIN,
    Server,
    clean_env,
    count_rows,
    cpu_seconds,
    free_port,
    helper_server,
    pg_available,
    scratch_postgres,
    write_gateway_config,
)

TOKEN = "bench-device-token"
PG_DATABASE = "mg_bench"


@dataclass
class Phase:
    label: str
    kind: str  # "batch" | "single"
    connections: int
    result: dict[str, Any]
    server_cpu: float
    group_size: float | None = None
    commit_ms: float | None = None
    check: bool = True


@dataclass
class Run:
    args: argparse.Namespace
    tmp: Path
    base: datetime
    phases: list[Phase] = field(default_factory=list)
    raw: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    imports: dict[str, float] = field(default_factory=dict)
    stored: dict[str, tuple[int, int]] = field(default_factory=dict)  # db -> (answered accepted, stored)


def _metric_sums(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in (
        "gateway_intake_group_size_sum",
        "gateway_intake_group_size_count",
        "gateway_intake_commit_seconds_sum",
        "gateway_intake_commit_seconds_count",
    ):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def run_client(
    run: Run, server: Server, tag: str, kind: str, step_offset: int, check: bool
) -> dict[str, Any]:
    a = run.args
    conns = a.batch_connections if kind == "batch" else a.single_connections
    cmd = [
        sys.executable, "-m", "load_tests.client",
        "--url", f"http://127.0.0.1:{server.port}/api/v1/readings",
        "--token", TOKEN,
        "--tag", tag,
        "--concurrency", str(conns),
        "--batch", str(a.batch if kind == "batch" else 1),
        "--duration", str(a.duration),
        "--warmup", str(a.warmup),
        "--meters", str(a.meters),
        "--step-offset", str(step_offset),
        "--base", run.base.isoformat(),
    ]  # fmt: skip
    if not check:
        cmd.append("--no-check")
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=clean_env(), cwd=Path(__file__).parent.parent
    )
    if out.returncode != 0:
        raise RuntimeError(f"load client failed:\n{out.stderr[-3000:]}")
    return dict(orjson.loads(out.stdout.strip().splitlines()[-1]))


def load_phases(run: Run, server: Server, name: str, check: bool, step_offset: int = 0) -> int:
    """Batches of 200, then single readings, against one server; returns the next free step."""
    for kind in ("batch", "single"):
        label = f"{name}, {'batches of ' + str(run.args.batch) if kind == 'batch' else 'single reading'}"
        print(f"  {label} ...", flush=True)
        before = _metric_sums(server.get("/metrics")) if check else {}
        cpu0, t0 = cpu_seconds(server.proc.pid), time.monotonic()  # type: ignore[union-attr]
        tag = re.sub(r"\W+", "-", f"{name}-{kind}").strip("-")
        result = run_client(run, server, tag, kind, step_offset, check)
        cpu1, t1 = cpu_seconds(server.proc.pid), time.monotonic()  # type: ignore[union-attr]
        phase = Phase(
            label,
            kind,
            run.args.batch_connections if kind == "batch" else run.args.single_connections,
            result,
            (cpu1 - cpu0) / (t1 - t0),
            check=check,
        )
        if check:
            after = _metric_sums(server.get("/metrics"))
            groups = after["gateway_intake_group_size_count"] - before["gateway_intake_group_size_count"]
            if groups:
                phase.group_size = (
                    after["gateway_intake_group_size_sum"] - before["gateway_intake_group_size_sum"]
                ) / groups
                phase.commit_ms = (
                    1000
                    * (
                        after["gateway_intake_commit_seconds_sum"]
                        - before["gateway_intake_commit_seconds_sum"]
                    )
                    / groups
                )
        run.phases.append(phase)
        step_offset = int(result["max_step"]) + 1
        if result["errors"]:
            run.notes.append(f"{label}: {result['errors']} errors, e.g. {result['error_samples'][:2]}")
        if check and result["not_accepted"]:
            top = sorted(result["not_accepted"].items(), key=lambda kv: -kv[1])[:3]
            run.notes.append(f"{label}: not accepted: {top}")
    return step_offset


def write_registry(path: Path, meters: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address\n")
        for i in range(1, meters + 1):
            f.write(f"{4000000 + i},{serial(i)},Меркурий 201,T,7,,,ул. Нагрузочная {i}\n")


def write_config(path: Path, db_url: str, port: int) -> None:
    write_gateway_config(path, db_url, port, f'[devices]\ntokens = ["{TOKEN}"]\n')


def gateway_command(args: argparse.Namespace, config: Path) -> list[str]:
    return [*shlex.split(args.gateway_command), "--config", str(config), "run"]


def import_registry(run: Run, config: Path, csv: Path, name: str) -> None:
    print(f"  importing {run.args.meters} meters into {name} ...", flush=True)
    started = time.monotonic()
    out = subprocess.run(
        [str(BIN / "meter-gateway"), "--config", str(config), "import", "registry", str(csv)],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=run.tmp,
    )
    if out.returncode != 0:
        raise RuntimeError(f"registry import failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    run.imports[name] = time.monotonic() - started


def bench_gateway(run: Run, name: str, db_url: str, csv: Path) -> None:
    config = run.tmp / f"{name}.toml"
    port = free_port()
    write_config(config, db_url, port)
    import_registry(run, config, csv, name)
    if name == "sqlite":
        # Baseline (b) on a copy of exactly this database, before the gateway writes to it.
        raw_path = run.tmp / "raw.db"
        src = sqlite3.connect(db_url.split("///", 1)[1])
        dst = sqlite3.connect(raw_path)
        src.backup(dst)
        src.close()
        dst.close()
        print(f"  raw SQLite baselines ({run.args.raw_duration:g} s each) ...", flush=True)
        run.raw = raw_sqlite.run(raw_path, run.args.raw_duration)
    server = Server(
        f"gateway ({name})", gateway_command(run.args, config), port, run.tmp / f"{name}.log", run.tmp
    )
    with server:
        print(f"  {server.name} pid {server.proc.pid if server.proc else '?'}", flush=True)
        load_phases(run, server, f"gateway {name}", check=True)
    answered = sum(p.result["accepted_all"] for p in run.phases if p.label.startswith(f"gateway {name},"))
    run.stored[name] = (answered, count_rows(db_url, "readings", accepted_only=True))


def bench_bare(run: Run) -> None:
    server = helper_server("bare aiohttp", ["load_tests.bare_server"], run.tmp / "bare.log")
    with server:
        load_phases(run, server, "bare aiohttp", check=False)


def bench_postgres(run: Run, csv: Path) -> None:
    with scratch_postgres(PG_DATABASE) as url:
        bench_gateway(run, "postgresql", url, csv)


# -- the report -----------------------------------------------------------------------------------


def _f(x: float | None, digits: int = 0) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:,.{digits}f}"


def report(run: Run) -> str:
    a = run.args
    lines = [
        "",
        f"meter-gateway load test - {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {a.meters:,} meters, {a.duration:g} s per phase",
        "registry import: " + ", ".join(f"{k} {v:.1f} s" for k, v in run.imports.items()),
        "",
    ]
    head = (
        f"{'phase':40} {'conns':>5} {'readings/s':>11} {'requests/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'accepted':>8} {'srv CPU':>7} {'cli CPU':>7} {'group':>6} {'commit ms':>9}"
    )
    lines += [head, "-" * len(head)]
    for kind in ("batch", "single"):
        for p in (p for p in run.phases if p.kind == kind):
            r = p.result
            share = f"{100 * r['accepted'] / r['items']:.1f}%" if p.check and r["items"] else "n/a"
            lines.append(
                f"{p.label:40} {p.connections:>5} {_f(r['items_per_s']):>11} {_f(r['requests_per_s']):>10} "
                f"{_f(r['p50_ms'], 1):>8} {_f(r['p99_ms'], 1):>8} {share:>8} {100 * p.server_cpu:>6.0f}% "
                f"{100 * r['client_cpu']:>6.0f}% {_f(p.group_size, 0):>6} {_f(p.commit_ms, 1):>9}"
            )
    if run.raw:
        lines += [
            f"{'raw sqlite3 executemany 200 readings/commit':40} {'1':>5} {_f(run.raw['readings_batched']):>11}",
            f"{'raw sqlite3 gateway write set, 200/commit':40} {'1':>5} {_f(run.raw['write_set_batched']):>11}",
            f"{'raw sqlite3 1 reading per commit':40} {'1':>5} {'':>11} {_f(run.raw['single_commit']):>10}"
            "  (durable commits/s)",
        ]
    lines.append("")

    def get(label_start: str, kind: str) -> dict[str, Any] | None:
        for p in run.phases:
            if p.label.startswith(label_start) and p.kind == kind:
                return p.result
        return None

    bare_b, bare_s = get("bare aiohttp,", "batch"), get("bare aiohttp,", "single")
    for db in ("sqlite", "postgresql"):
        gw_b, gw_s = get(f"gateway {db},", "batch"), get(f"gateway {db},", "single")
        if gw_b is None or gw_s is None:
            continue
        lines.append(f"ratios, gateway on {db}:")
        ratios = []
        if bare_b:
            ratios.append(
                ("batches  readings/s  gateway / bare aiohttp", gw_b["items_per_s"], bare_b["items_per_s"])
            )
        if run.raw and db == "sqlite":
            ratios.append(
                (
                    "batches  readings/s  gateway / raw executemany",
                    gw_b["items_per_s"],
                    run.raw["readings_batched"],
                )
            )
            ratios.append(
                (
                    "batches  readings/s  gateway / raw write set",
                    gw_b["items_per_s"],
                    run.raw["write_set_batched"],
                )
            )
        if bare_s:
            ratios.append(
                (
                    "single   requests/s  gateway / bare aiohttp",
                    gw_s["requests_per_s"],
                    bare_s["requests_per_s"],
                )
            )
        if run.raw and db == "sqlite":
            ratios.append(
                (
                    "single   requests/s  gateway / raw 1-row commits",
                    gw_s["requests_per_s"],
                    run.raw["single_commit"],
                )
            )
        lines += [f"  {text:50} {mine / theirs:6.2f}" for text, mine, theirs in ratios]
        if db in run.stored:
            answered, stored = run.stored[db]
            lines.append(f"  accepted answers {answered:,}, accepted readings stored {stored:,}")
    gw_b, gw_s = get("gateway sqlite,", "batch"), get("gateway sqlite,", "single")
    if gw_b and gw_s:
        lines.append("")
        lines.append("targets (SQLite):")
        ok_b = gw_b["items_per_s"] >= 20000 and gw_b["accepted"] == gw_b["items"]
        lines.append(
            f"  >= 20,000 validated durably stored readings/s in batches: {_f(gw_b['items_per_s'])} "
            f"{'MET' if ok_b else 'MISSED'}"
        )
        if bare_s:
            ratio = gw_s["requests_per_s"] / bare_s["requests_per_s"]
            lines.append(
                f"  single-reading requests >= 0.5 x bare aiohttp: {ratio:.2f} {'MET' if ratio >= 0.5 else 'MISSED'}"
            )
    if run.notes:
        lines += ["", "notes:"] + [f"  {n}" for n in run.notes]
    lines.append("")
    lines.append(
        "srv/cli CPU: share of one core used by the server (with its writer process) / the load client during the phase; "
        "group: mean submissions per intake commit; commit ms: mean time to decide and commit one group."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests", description=__doc__)
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per load phase (default 12)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each phase is measured")
    parser.add_argument("--raw-duration", type=float, default=5.0, help="seconds per raw SQLite baseline")
    parser.add_argument("--meters", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=200, help="readings per batch request")
    parser.add_argument("--batch-connections", type=int, default=16)
    parser.add_argument("--single-connections", type=int, default=128)
    parser.add_argument("--postgres", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument(
        "--gateway-command",
        default=str(BIN / "meter-gateway"),
        help="command that starts the gateway; '--config FILE run' is appended",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    args = parser.parse_args(argv)
    if args.meters < max(args.batch_connections, args.single_connections):
        parser.error("--meters must be at least the number of connections")

    tmp = Path(tempfile.mkdtemp(prefix="mg-bench-"))
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    run = Run(args, tmp, base=now - timedelta(days=30))
    print(f"meter-gateway load test in {tmp}", flush=True)
    try:
        csv = tmp / "registry.csv"
        write_registry(csv, args.meters)
        if not args.skip_bare:
            bench_bare(run)
        bench_gateway(run, "sqlite", f"sqlite+aiosqlite:///{tmp / 'gateway.db'}", csv)
        if args.postgres == "yes" or (args.postgres == "auto" and pg_available()):
            bench_postgres(run, csv)
        elif args.postgres == "auto":
            run.notes.append("PostgreSQL not running on 127.0.0.1:5432: skipped")
    finally:
        print(report(run), flush=True)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0
