"""Operators' probes: `/healthz` (JSON status of the database and channels) and `/metrics`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.app_keys import BILLING, CLOCK, ENGINE, HEALTH_PROBES, METRICS
from adapters.http_common import json_response
from gateway.billing import Billing
from gateway.intake import Clock
from gateway.metrics import Metrics

if TYPE_CHECKING:
    from gateway.service import Gateway

routes = web.RouteTableDef()


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
    return json_response({"status": "ok" if ok else "down", "checks": checks}, status=200 if ok else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; backlog figures are read from the database at scrape time."""
    m: Metrics = request.app[METRICS]
    billing: Billing = request.app[BILLING]
    clock: Clock = request.app[CLOCK]
    backlog = await billing.backlog(clock())
    m.backlog.set(backlog["pending"])
    m.oldest_age.set(backlog["oldest_age_seconds"])
    m.overdue.set(backlog["overdue"])
    for status, count in backlog["held"].items():
        m.held.labels(status).set(count)
    return web.Response(body=m.render(), content_type="text/plain", charset="utf-8")


def install(gateway: Gateway, app: web.Application) -> None:
    """Add this module's routes to the gateway's application."""
    app.add_routes(routes)
