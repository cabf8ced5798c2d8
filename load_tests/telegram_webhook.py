"""Telegram webhook: updates per second and p99 latency, beside a bare aiohttp baseline.

    .venv/bin/python -m load_tests.telegram_webhook [--duration 10] [--connections 32] [--postgres auto|no]

Phases (every server and the load generator are separate processes):

1. baseline: a bare aiohttp server on `POST /channels/telegram/webhook` that reads the body,
   checks the secret header and answers `{"ok": true}` (same Python, aiohttp and event loop as
   the gateway; no middleware, no aiogram, no database);
2. `meter-gateway run` with `[telegram] mode = "webhook"` on SQLite, then on PostgreSQL
   (database `mg_tg_bench` on 127.0.0.1:5432, dropped after; skipped when PostgreSQL does not
   answer), its `api_base` pointing at the local fake Bot API server
   (tests/adapters/telegram/fake_bot_api.py, its own process). `--chats` private chats are linked
   beforehand to as many single-rate accounts; each request is one Update, a text message with the chat's next reading (+0.01 kWh each
   time, always plausible), posted with the secret header exactly as Telegram posts it. The
   gateway answers 200 only after the update row is committed, the reading decided and stored,
   the reply stored and sent to the Bot API server (`sendMessage`), and the row marked done.

Each answer must be 200 with `"outcome": "done"`; after each gateway run the accepted readings
in the database and the sendMessage calls the fake Bot API server received are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from load_tests.common import (
    BIN,
    ROOT,
    Server,
    Tally,
    channel_client_main,
    channel_client_phase,
    clean_env,
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

ROUTE = "/channels/telegram/webhook"
SECRET = "bench-webhook-secret"
HEADER = "X-Telegram-Bot-Api-Secret-Token"
PG_DATABASE = "mg_tg_bench"
FIRST_ACCOUNT = 6_000_000
FIRST_CHAT = 800_000_000


# -- the servers that are not the gateway ------------------------------------------------------


def serve_bare(port: int) -> None:
    """Baseline: reads the Update, checks the secret, answers at once; nothing else."""
    import hmac

    from aiohttp import web

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        if not hmac.compare_digest(request.headers.get(HEADER, ""), SECRET) or not body:
            return web.Response(status=401)
        return web.Response(body=b'{"ok":true,"outcome":"done"}', content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text='{"status":"ok"}', content_type="application/json")

    app = web.Application()
    app.router.add_post(ROUTE, hook)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, backlog=1024, print=None)


def serve_bot_api(port: int) -> None:
    """The local Bot API server the gateway replies through (counts calls, keeps none)."""
    sys.path.insert(0, str(ROOT))
    from tests.adapters.telegram.fake_bot_api import FakeBotApi

    async def go() -> None:
        api = FakeBotApi(record=False)
        await api.start(port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await api.stop()

    asyncio.run(go())


# -- the load generator -----------------------------------------------------------------------


def update_json(update_id: int, chat_id: int, text: str) -> bytes:
    return orjson.dumps(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private", "first_name": "Нагрузка"},
                "from": {"id": chat_id, "is_bot": False, "first_name": "Нагрузка", "language_code": "ru"},
                "text": text,
            },
        }
    )


async def _worker(
    index: int,
    http: aiohttp.ClientSession,
    url: str,
    chats: list[int],
    window: tuple[float, float],
    tally: Tally,
    check: bool,
) -> None:
    steps = dict.fromkeys(chats, 0)
    ids = itertools.count(index * 10_000_000 + 1)
    headers = {HEADER: SECRET, "Content-Type": "application/json"}
    turn = itertools.count()

    async def send() -> tuple[int, bytes]:
        chat = chats[next(turn) % len(chats)]
        steps[chat] += 1
        value = Decimal(1000) + Decimal(steps[chat]) / 100  # +0.01 kWh an update: always plausible
        body = update_json(next(ids), chat, f"{value}".replace(".", ","))
        async with http.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    await timed_requests(send, lambda raw: orjson.loads(raw).get("outcome") == "done", window, tally, check)


async def run_client(
    url: str, connections: int, chats: int, duration: float, warmup: float, check: bool
) -> dict[str, Any]:
    groups = [
        list(range(FIRST_CHAT + w + 1, FIRST_CHAT + chats + 1, connections)) for w in range(connections)
    ]
    return await run_timed_clients(
        connections,
        duration,
        warmup,
        lambda http, window, tally: [
            _worker(i, http, url, g, window, tally, check) for i, g in enumerate(groups) if g
        ],
    )


# -- orchestration ----------------------------------------------------------------------------


def write_registry(path: Path, chats: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address\n")
        for i in range(1, chats + 1):
            f.write(f"{FIRST_ACCOUNT + i},TG-{i:06d},Меркурий 201,T,7,+7901{i:07d},,ул. Телеграм {i}\n")


def write_config(path: Path, db_url: str, port: int, registry: Path, bot_api: str) -> None:
    write_gateway_config(
        path,
        db_url,
        port,
        f"""[registry]
csv = "{registry}"

[telegram]
enabled = true
token = "7000001:TEST-fake-bot-api-token"
mode = "webhook"
webhook_secret = "{SECRET}"
api_base = "{bot_api}"
reminders = false
""",
    )


def prepare_database(config: Path, registry: Path, db_url: str, chats: int) -> None:
    """Migrate, import the registry and link chat FIRST_CHAT + i to account FIRST_ACCOUNT + i."""
    out = subprocess.run(
        [str(BIN / "meter-gateway"), "--config", str(config), "import", "registry", str(registry)],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"registry import failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")

    async def link() -> None:
        from datetime import UTC, datetime

        from sqlalchemy import insert, select

        from adapters.telegram.tables import telegram_links
        from gateway.store.database import create_engine
        from gateway.store.schema import accounts

        engine = create_engine(db_url)
        try:
            async with engine.begin() as conn:
                ids = dict((await conn.execute(select(accounts.c.number, accounts.c.id))).all())
                now = datetime.now(UTC)
                rows = [
                    {
                        "chat_id": FIRST_CHAT + i,
                        "account_id": ids[str(FIRST_ACCOUNT + i)],
                        "user_id": FIRST_CHAT + i,
                        "method": "last4",
                        "linked_at": now,
                        "reminders": False,
                    }
                    for i in range(1, chats + 1)
                ]
                await conn.execute(insert(telegram_links), rows)
        finally:
            await engine.dispose()

    sys.path.insert(0, str(ROOT))
    asyncio.run(link())


def client_phase(args: argparse.Namespace, server: Server, check: bool) -> dict[str, Any]:
    return channel_client_phase("load_tests.telegram_webhook", ROUTE, "chats", args, server, check)


def bench_gateway(
    args: argparse.Namespace, tmp: Path, name: str, db_url: str, registry: Path, bot_api: Server
) -> dict[str, Any]:
    port = free_port()
    config = tmp / f"{name}.toml"
    write_config(config, db_url, port, registry, f"http://127.0.0.1:{bot_api.port}")
    print(f"  gateway ({name}): importing {args.chats} accounts, linking as many chats ...", flush=True)
    prepare_database(config, registry, db_url, args.chats)
    server = gateway_server(f"gateway ({name})", config, port, tmp / f"{name}.log")
    sent_before = bot_api.get_json("/_stats")["counts"].get("sendMessage", 0)
    with server:
        result = client_phase(args, server, check=True)
    result["accepted"] = count_rows(db_url, "readings", accepted_only=True)
    result["replies"] = bot_api.get_json("/_stats")["counts"].get("sendMessage", 0) - sent_before
    return result


def report(rows: list[tuple[str, dict[str, Any]]], args: argparse.Namespace) -> str:
    lines = [
        "",
        f"Telegram webhook: POST {ROUTE}, one Update (a text reading of a linked chat) per request,",
        f"{args.connections} connections, {args.duration:g} s after a 1 s warm-up, {args.chats} linked chats, "
        f"{os.cpu_count()} cores shared by client, gateway and the fake Bot API server",
        "",
        f"{'server':<28}{'updates/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'done':>8}{'errors':>8}{'srv CPU':>9}{'cli CPU':>9}",
    ]
    for name, r in rows:
        lines.append(
            f"{name:<28}{r['per_s']:>10.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
            f"{r['ok']:>8}{r['errors']:>8}{r['server_cpu']:>9.2f}{r['client_cpu']:>9.2f}"
        )
    base = rows[0][1]["per_s"] if rows else 0
    for name, r in rows[1:]:
        lines.append(
            f"  {name}: {r['accepted']} readings accepted and stored, {r['replies']} replies sent "
            f"(sendMessage), {r['per_s'] / base:.1%} of the bare aiohttp rate"
            if base
            else f"  {name}: {r['accepted']} accepted"
        )
        if r.get("other"):
            lines.append(f"  {name}: other answers {r['other']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["serve-bare"], ["serve-bot-api"]):
        p = argparse.ArgumentParser(prog=f"python -m load_tests.telegram_webhook {argv[0]}")
        p.add_argument("--port", type=int, required=True)
        port = p.parse_args(argv[1:]).port
        (serve_bare if argv[0] == "serve-bare" else serve_bot_api)(port)
        return 0
    if argv[:1] == ["client"]:
        return channel_client_main("load_tests.telegram_webhook", "chats", 2000, run_client, argv[1:])

    parser = argparse.ArgumentParser(
        prog="python -m load_tests.telegram_webhook", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--chats", type=int, default=2000)
    parser.add_argument("--postgres", choices=["auto", "no"], default="auto")
    args = parser.parse_args(argv)

    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="tg-bench-") as tmp_name:
        tmp = Path(tmp_name)
        registry = tmp / "registry.csv"
        write_registry(registry, args.chats)

        bare = helper_server("bare aiohttp", ["load_tests.telegram_webhook", "serve-bare"], tmp / "bare.log")
        print("  bare aiohttp baseline ...", flush=True)
        with bare:
            rows.append(("bare aiohttp (baseline)", client_phase(args, bare, check=False)))

        bot_api = helper_server(
            "fake Bot API",
            ["load_tests.telegram_webhook", "serve-bot-api"],
            tmp / "bot-api.log",
            health="/_stats",
        )
        with bot_api:
            url = f"sqlite+aiosqlite:///{tmp / 'telegram.db'}"
            rows.append(("gateway, SQLite", bench_gateway(args, tmp, "sqlite", url, registry, bot_api)))
            if args.postgres == "auto" and pg_available():
                with scratch_postgres(PG_DATABASE) as url:
                    rows.append(
                        (
                            "gateway, PostgreSQL",
                            bench_gateway(args, tmp, "postgresql", url, registry, bot_api),
                        )
                    )

    print(report(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
