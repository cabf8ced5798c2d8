"""Operators' probes: `/healthz` (JSON status of the database and channels) and `/metrics`.

With `[ops] token` set, `/metrics` and the details of `/healthz` (which channels, which backend,
what failed) need `Authorization: Bearer <token>`; without it `/healthz` answers the status
alone, with the same 200/503, so load balancers keep probing it without a secret.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app_keys import BILLING, CLOCK, CONFIG, ENGINE, HEALTH_PROBES, METRICS
from gateway.billing import Billing
from gateway.http_api import error_response, json_response
from gateway.intake import Clock
from gateway.metrics import Metrics

if TYPE_CHECKING:
    from gateway.service import Gateway

routes = web.RouteTableDef()


def _authorised(request: web.Request) -> bool:
    """No token configured, or the request carries it (compared in constant time)."""
    token = request.app[CONFIG].ops.token
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers; 503 with the failing part named otherwise."""
    engine: AsyncEngine = request.app[ENGINE]
    checks: dict[str, Any] = {}
    ok = True
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = {"status": "ok", "backend": engine.dialect.name}
    except Exception as exc:  # the probe must report, not fail
        ok = False
        checks["database"] = {"status": "down", "error": type(exc).__name__}
    for name, probe in request.app[HEALTH_PROBES].items():
        status = probe()
        checks[name] = status
        ok = ok and status.get("status") in ("ok", "disabled", "degraded")
    overall = "ok" if ok else "down"
    if not _authorised(request):  # liveness only: the status, nothing about what runs
        return json_response({"status": overall}, status=200 if ok else 503)
    return json_response({"status": overall, "checks": checks}, status=200 if ok else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; backlog figures are read from the database at scrape time."""
    if not _authorised(request):
        denied = error_response(401, "unauthorized", "GET /metrics needs Authorization: Bearer <[ops] token>")
        denied.headers["WWW-Authenticate"] = "Bearer"
        return denied
    m: Metrics = request.app[METRICS]
    billing: Billing = request.app[BILLING]
    clock: Clock = request.app[CLOCK]
    now = clock()
    backlog = await billing.backlog(now)
    for branch, figures in backlog["branches"].items():  # every configured branch, 0 when idle
        m.backlog.labels(branch).set(figures["pending"])
        m.oldest_age.labels(branch).set(figures["oldest_age_seconds"])
        m.overdue.labels(branch).set(figures["overdue"])
        next_due = figures["next_due_at"]
        m.next_due.labels(branch).set(
            (datetime.fromisoformat(next_due) - now).total_seconds() if next_due else 0.0
        )
        for status, count in figures["held"].items():
            m.held.labels(branch, status).set(count)
        for status, count in figures["held_overdue"].items():
            m.held_overdue.labels(branch, status).set(count)
    return web.Response(body=m.render(), content_type="text/plain", charset="utf-8")


def install(gateway: Gateway, app: web.Application) -> None:
    """Add this module's routes to the gateway's application."""
    app.add_routes(routes)
