"""SMS through the Kannel route: inbound SMS per second and p99 latency, beside a bare aiohttp baseline.

    .venv/bin/python -m load_tests.sms_kannel [--duration 10] [--connections 32] [--postgres auto|no]

Phases (each server and the load generator are separate processes):

1. baseline: a bare aiohttp server answering `GET /channels/sms/kannel` with a fixed reply
   (same Python, aiohttp and event loop as the gateway; no middleware, no database);
2. `meter-gateway run` on SQLite, then on PostgreSQL (database `mg_sms_bench` on 127.0.0.1:5432,
   dropped after; skipped when PostgreSQL does not answer): the load generator calls the route
   exactly as smsbox's sms-service does (`from`, `to`, `text`, `id`, `ts`, `key`), one SMS per
   request, from `--phones` registered phones, each sending increasing single-rate readings, and
   checks every reply is a confirmation ("Принято: ...");
3. end to end through real Kannel (when installed): fakesmsc sends `--kannel-messages` SMS as
   fast as it can; bearerbox -> smsbox -> the gateway (SQLite) -> replies back to fakesmsc. The
   figure is SMS per second from the first sent to the last reply received.

Prints a table at the end. The per-sender reply budget and submission limit are raised for the
run, so every SMS is decided and answered (a withheld reply or a refusal would be cheaper, not dearer).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from load_tests.common import (
    ROOT,
    Server,
    Tally,
    channel_client_main,
    channel_client_phase,
    count_rows,
    free_port,
    gateway_server,
    helper_server,
    pg_available,
    run_timed_clients,
    scratch_postgres,
    timed_requests,
    write_gateway_config,
)

KEY = "bench-kannel-key"
PG_DATABASE = "mg_sms_bench"
ROUTE = "/channels/sms/kannel"


def phone(i: int) -> str:
    return f"+7900{i:07d}"


# -- the bare baseline server -----------------------------------------------------------------


def serve_bare(port: int) -> None:
    """Baseline: reads the query, answers a fixed reply SMS; nothing else."""
    from aiohttp import web

    reply = "Принято: 12345 (л/с 1000001). №1"

    async def kannel(request: web.Request) -> web.Response:
        _ = request.query.get("text")
        return web.Response(
            text=reply, content_type="text/plain", charset="utf-8", headers={"X-Kannel-Coding": "2"}
        )

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text='{"status":"ok"}', content_type="application/json")

    app = web.Application()
    app.router.add_get(ROUTE, kannel)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, backlog=1024, print=None)


# -- the load generator -----------------------------------------------------------------------


async def _worker(
    http: aiohttp.ClientSession,
    url: str,
    phones: list[int],
    window: tuple[float, float],
    tally: Tally,
    check: bool,
) -> None:
    steps = dict.fromkeys(phones, 0)
    turn = itertools.count()

    async def send() -> tuple[int, bytes]:
        who = phones[next(turn) % len(phones)]
        steps[who] += 1
        value = Decimal(1000) + Decimal(steps[who]) / 100  # +0.01 kWh a message: always plausible
        params = {
            "from": phone(who),
            "to": "7377",
            "text": f"{value}",
            "id": uuid.uuid4().hex,
            "ts": "2026-11-17 12:00:00",
            "coding": "0",
            "charset": "UTF-8",
            "key": KEY,
        }
        async with http.get(url, params=params) as resp:
            return resp.status, await resp.read()

    await timed_requests(send, lambda body: body.decode().startswith("Принято"), window, tally, check)


async def run_client(
    url: str, connections: int, phones: int, duration: float, warmup: float, check: bool
) -> dict[str, Any]:
    groups = [list(range(w + 1, phones + 1, connections)) for w in range(connections)]
    return await run_timed_clients(
        connections,
        duration,
        warmup,
        lambda http, window, tally: [_worker(http, url, g, window, tally, check) for g in groups if g],
    )


# -- orchestration ----------------------------------------------------------------------------


def write_registry(path: Path, phones: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address\n")
        for i in range(1, phones + 1):
            f.write(f"{5000000 + i},SMS-{i:06d},Меркурий 201,T,7,{phone(i)},,ул. СМС {i}\n")


def write_config(path: Path, db_url: str, port: int, registry: Path) -> None:
    write_gateway_config(
        path,
        db_url,
        port,
        f"""[registry]
csv = "{registry}"

[sms]
kannel_key = "{KEY}"
replies_per_hour = 1000000

[senders]
submissions_per_hour = 1000000
""",
    )


def client_phase(args: argparse.Namespace, server: Server, check: bool) -> dict[str, Any]:
    return channel_client_phase("load_tests.sms_kannel", ROUTE, "phones", args, server, check)


def route_p99_from_metrics(text: str) -> float | None:
    """Upper bound (ms) of the bucket holding the 99th percentile of the route's server-side latency."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith("gateway_http_request_seconds_bucket") and f'route="{ROUTE}"' in line:
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for le, count in sorted(buckets):
        if count >= 0.99 * total:
            return le * 1000
    return None


def bench_gateway(
    args: argparse.Namespace, tmp: Path, name: str, db_url: str, registry: Path
) -> dict[str, Any]:
    port = free_port()
    config = tmp / f"{name}.toml"
    write_config(config, db_url, port, registry)
    server = gateway_server(f"gateway ({name})", config, port, tmp / f"{name}.log")
    print(f"  {server.name}: starting (imports {args.phones} accounts) ...", flush=True)
    with server:
        result = client_phase(args, server, check=True)
    result["stored"] = count_rows(db_url, "inbound")
    return result


def bench_kannel(args: argparse.Namespace, tmp: Path, registry: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests.adapters.sms.kannel_rig import KannelRig, kannel_binaries

    if kannel_binaries() is None:
        return {"skipped": "Kannel is not installed (kannel, kannel-extras)"}
    db_url = f"sqlite+aiosqlite:///{tmp / 'kannel.db'}"
    port = free_port()
    config = tmp / "kannel.toml"
    write_config(config, db_url, port, registry)
    server = gateway_server("gateway (Kannel)", config, port, tmp / "kannel-gw.log")
    rig = KannelRig(tmp / "kannel", port, KEY)
    n = args.kannel_messages
    # Registered phones sending plausible readings; fakesmsc picks among them at random.
    messages = ["-m", str(n)] + [
        f"{phone(i)} 7377 text {1000 + i}" for i in range(1, min(args.phones, 300) + 1)
    ]
    with server:
        try:
            started = time.monotonic()
            rig.start(messages=messages)
            deadline = time.monotonic() + args.kannel_timeout
            while len(rig.received) < n and time.monotonic() < deadline:
                time.sleep(0.02)
            elapsed = time.monotonic() - started
            received = len(rig.received)
            p99 = route_p99_from_metrics(server.metrics())
        finally:
            rig.stop()
    confirmed = sum(1 for m in rig.received if m.text.startswith("Принято"))
    return {
        "sent": n,
        "replies": received,
        "confirmed": confirmed,
        "seconds": elapsed,
        "sms_per_s": received / elapsed if elapsed else float("nan"),
        "route_p99_ms_bucket": p99,
        "stored": count_rows(db_url, "inbound"),
    }


def report(
    rows: list[tuple[str, dict[str, Any]]], kannel: dict[str, Any] | None, args: argparse.Namespace
) -> str:
    lines = [
        "",
        f"SMS through the Kannel route: GET {ROUTE} as smsbox sends it, one SMS per request,",
        f"{args.connections} connections, {args.duration:g} s after a 1 s warm-up, {args.phones} registered phones, "
        f"{os.cpu_count()} cores shared by client and server",
        "",
        f"{'server':<28}{'SMS/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'confirmed':>11}{'errors':>8}{'srv CPU':>9}{'cli CPU':>9}",
    ]
    for name, r in rows:
        lines.append(
            f"{name:<28}{r['per_s']:>9.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
            f"{r['ok']:>11}{r['errors']:>8}{r['server_cpu']:>9.2f}{r['client_cpu']:>9.2f}"
        )
    for name, r in rows:
        if r.get("other"):
            lines.append(f"  {name}: other replies {r['other']}")
        if "stored" in r:
            lines.append(f"  {name}: {r['stored']} inbound SMS stored")
    if kannel is not None:
        lines.append("")
        if "skipped" in kannel:
            lines.append(f"end to end through Kannel: skipped ({kannel['skipped']})")
        else:
            p99 = kannel["route_p99_ms_bucket"]
            lines.append(
                f"end to end through Kannel (fakesmsc -> bearerbox -> smsbox -> gateway on SQLite -> back): "
                f"{kannel['replies']}/{kannel['sent']} replies in {kannel['seconds']:.1f} s = "
                f"{kannel['sms_per_s']:.0f} SMS/s; {kannel['confirmed']} confirmations; "
                f"{kannel['stored']} stored; gateway route p99 <= {p99:g} ms (histogram bucket)"
                if p99 is not None
                else f"end to end through Kannel: {kannel['replies']}/{kannel['sent']} replies in {kannel['seconds']:.1f} s"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve-bare"]:
        p = argparse.ArgumentParser(prog="python -m load_tests.sms_kannel serve-bare")
        p.add_argument("--port", type=int, required=True)
        serve_bare(p.parse_args(argv[1:]).port)
        return 0
    if argv[:1] == ["client"]:
        return channel_client_main("load_tests.sms_kannel", "phones", 4000, run_client, argv[1:])

    parser = argparse.ArgumentParser(
        prog="python -m load_tests.sms_kannel", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--phones", type=int, default=4000)
    parser.add_argument("--postgres", choices=["auto", "no"], default="auto")
    parser.add_argument("--kannel", choices=["auto", "no"], default="auto")
    parser.add_argument("--kannel-messages", type=int, default=2000)
    parser.add_argument("--kannel-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    rows: list[tuple[str, dict[str, Any]]] = []
    kannel: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="sms-bench-") as tmp_name:
        tmp = Path(tmp_name)
        registry = tmp / "registry.csv"
        write_registry(registry, args.phones)

        bare = helper_server("bare aiohttp", ["load_tests.sms_kannel", "serve-bare"], tmp / "bare.log")
        print("  bare aiohttp baseline ...", flush=True)
        with bare:
            rows.append(("bare aiohttp (baseline)", client_phase(args, bare, check=False)))

        rows.append(
            (
                "gateway, SQLite",
                bench_gateway(args, tmp, "sqlite", f"sqlite+aiosqlite:///{tmp / 'sms.db'}", registry),
            )
        )

        if args.postgres == "auto" and pg_available():
            with scratch_postgres(PG_DATABASE) as url:
                rows.append(("gateway, PostgreSQL", bench_gateway(args, tmp, "postgresql", url, registry)))

        if args.kannel == "auto":
            print(f"  end to end through Kannel: {args.kannel_messages} SMS from fakesmsc ...", flush=True)
            kannel = bench_kannel(args, tmp, registry)

    print(report(rows, kannel, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
