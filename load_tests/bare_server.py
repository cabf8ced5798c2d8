"""Baseline (a): a bare aiohttp server whose handler reads the body and answers at once.

Same route, same Python, same aiohttp, same default event loop, access log off and the same
listen backlog as the gateway; no middleware, no JSON parsing, no database. What the client
achieves against it is the ceiling of HTTP handling on this machine.
"""

from __future__ import annotations

import argparse
import sys

from aiohttp import web

ANSWER = b'{"accepted":0,"total":0,"results":[]}'


async def push(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests.bare_server")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/api/v1/readings", push)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, backlog=1024, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
