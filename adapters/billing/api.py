"""Billing's HTTP API: lease batches, commit them, see the working-day SLA (README, "Billing")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from adapters.billing.sinks.service import RUNNERS
from gateway.app_keys import BILLING, CLOCK, CONFIG
from gateway.billing import BatchNotFound, Billing, LeaseExpired
from gateway.bounds import CONTROL
from gateway.config import Config
from gateway.http_api import ApiError, json_response, read_json, require_bearer
from gateway.intake import Clock

if TYPE_CHECKING:
    from gateway.service import Gateway

routes = web.RouteTableDef()


def _auth(request: web.Request) -> str:
    config: Config = request.app[CONFIG]
    token = require_bearer(request, config.billing.tokens, "billing")
    return f"token-{config.billing.tokens.index(token) + 1}"


@routes.post("/api/v1/billing/batches")
async def lease_batch(request: web.Request) -> web.Response:
    """Lease up to `limit` accepted readings: `201 {"batch_id", "lease_seconds", "readings"}`."""
    client = _auth(request)
    config: Config = request.app[CONFIG]
    body = await read_json(request)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", 'the body must be a JSON object like {"limit": 500}')
    limit = body.get("limit", 500)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= config.billing.max_batch:
        raise ApiError(400, "bad_limit", f"limit must be a whole number from 1 to {config.billing.max_batch}")
    billing: Billing = request.app[BILLING]
    clock: Clock = request.app[CLOCK]
    batch_id, rows = await billing.lease(client, limit, clock())
    return json_response(
        {"batch_id": batch_id, "lease_seconds": billing.lease_seconds, "readings": rows}, status=201
    )


@routes.post("/api/v1/billing/batches/{batch_id}/commit")
async def commit_batch(request: web.Request) -> web.Response:
    """Mark a leased batch as taken by billing; a second commit answers the same."""
    _auth(request)
    billing: Billing = request.app[BILLING]
    clock: Clock = request.app[CLOCK]
    batch_id = request.match_info["batch_id"]
    if len(batch_id) > 36 or CONTROL.search(batch_id):  # ids are UUIDs; PostgreSQL refuses a NUL
        raise ApiError(404, "batch_not_found", "batch ids are UUIDs of 36 characters")
    try:
        result = await billing.commit(batch_id, clock())
    except BatchNotFound:
        raise ApiError(404, "batch_not_found", f"no batch {batch_id}") from None
    except LeaseExpired:
        raise ApiError(
            409,
            "lease_expired",
            f"the lease of batch {batch_id} expired; its readings were returned, lease again",
        ) from None
    return json_response(
        {
            "batch_id": result.batch_id,
            "committed_at": result.committed_at.isoformat(),
            "size": result.size,
            "already_committed": result.already,
        }
    )


@routes.get("/api/v1/billing/sla")
async def sla(request: web.Request) -> web.Response:
    """Pending readings, the next deadline and every overdue reading (1 working day by default),
    per branch under `branches` (or one branch's alone with `?branch=ID`), and each billing
    sink's state (adapters/billing/sinks/)."""
    _auth(request)
    billing: Billing = request.app[BILLING]
    clock: Clock = request.app[CLOCK]
    now = clock()
    branch = None
    if "branch" in request.query:  # ?branch=ID: that branch's figures and readings alone
        wanted = request.query["branch"]
        branch = billing.branches.get(wanted) if len(wanted) <= 32 else None
        if branch is None:
            known = ", ".join(billing.branches.ids())
            raise ApiError(400, "unknown_branch", f"branch must be one of: {known}")
    view = await billing.sla(now, branch=branch)
    view["sinks"] = [await runner.state(now) for runner in request.app.get(RUNNERS, [])]
    return json_response(view)


def install(gateway: Gateway, app: web.Application) -> None:
    """Add this module's routes to the gateway's application."""
    app.add_routes(routes)
