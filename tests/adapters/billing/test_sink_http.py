"""The HTTP sink against a local billing stub that fails, times out, then acknowledges: every reading
reaches billing in exactly one batch (one Idempotency-Key), is committed only on the
acknowledgement, survives a restart of the gateway, and the SLA view, /healthz and /metrics
tell operators what is going on. Both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from sqlalchemy import func, select

from adapters.billing.sinks.config import HttpSinkConfig
from gateway.store.schema import batches, readings
from tests.adapters.billing.rigs import gateway_with, metric, push_readings, sla, until
from tests.conftest import FakeClock


class BillingStub:
    """A billing system's intake: answers by `mode` ("fail": 500, "slow": answers after the
    sink's time-out, "ack": 200), and keeps each batch once per Idempotency-Key, as billing would."""

    def __init__(self) -> None:
        self.mode = "fail"
        self.requests: list[tuple[str, list[int], str]] = []  # (key, reading ids, authorization)
        self.kept: dict[str, list[int]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        key = request.headers["Idempotency-Key"]
        assert body["batch_id"] == key
        ids = [r["reading_id"] for r in body["readings"]]
        self.requests.append((key, ids, request.headers.get("Authorization", "")))
        if self.mode == "fail":
            return web.json_response({"error": "database is down"}, status=500)
        self.kept.setdefault(key, ids)  # a repeat of a key is recognised, never kept twice
        if self.mode == "slow":
            self.mode = "ack"  # the next attempt is answered in time
            await asyncio.sleep(1.0)
        return web.json_response({"ok": True})


@pytest.fixture
async def stub() -> AsyncIterator[tuple[BillingStub, str]]:
    billing = BillingStub()
    app = web.Application()
    app.router.add_post("/readings", billing.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield billing, f"http://127.0.0.1:{port}/readings"
    await runner.cleanup()


def _sinks(url: str) -> dict[str, object]:
    http = HttpSinkConfig(
        enabled=True,
        url=url,
        token="billing-secret",
        batch_size=4,
        interval_seconds=0.05,
        timeout_seconds=0.3,
        retry_initial_seconds=0.05,
        retry_max_seconds=0.2,
    )
    return {"http": http}


async def test_every_reading_reaches_billing_once_through_failures_timeouts_and_a_restart(
    stub: tuple[BillingStub, str], db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    billing, url = stub
    async with gateway_with(db_url, tmp_path, clock, _sinks(url)) as running:
        ids = await push_readings(running, 10)

        async def failing() -> bool:
            sink = (await sla(running))["sinks"][0]
            return sink["failing"] is not None and sink["failing"]["attempts"] >= 2

        await until(failing)
        view = await sla(running)
        sink = view["sinks"][0]
        assert sink["sink"] == "http" and sink["role"] == "billing"
        assert sink["pending"] == 10 and view["pending"] == 10  # nothing committed while billing refuses
        assert sink["failing"]["last_error"].startswith("HTTP 500")
        assert sink["last_delivered_at"] is None
        status, health = await running.get("/healthz")
        assert status == 200 and isinstance(health, dict)
        assert health["checks"]["sink:http"]["status"] == "degraded"
        assert await metric(running, 'gateway_sink_batches_total{outcome="failed",sink="http"}') >= 2
        open_key = billing.requests[0][0]

    # The gateway stops with the batch unacknowledged; started again, it offers the same batch
    # under the same key, first to a billing that answers too late, then to one that answers.
    billing.mode = "slow"
    async with gateway_with(db_url, tmp_path, clock, _sinks(url)) as running:
        more = await push_readings(running, 5, first=10)

        async def drained() -> bool:
            view = await sla(running)
            return view["pending"] == 0 and view["sinks"][0]["pending"] == 0

        await until(drained)
        view = await sla(running)
        sink = view["sinks"][0]
        assert sink["failing"] is None and sink["last_delivered_at"] is not None
        status, health = await running.get("/healthz")
        assert isinstance(health, dict) and health["checks"]["sink:http"] == {"status": "ok"}
        assert await metric(running, 'gateway_sink_readings_total{sink="http"}') == 15
        assert await metric(running, 'gateway_sink_pending_readings{sink="http"}') == 0
        assert await metric(running, 'gateway_sink_failing_seconds{sink="http"}') == 0

        engine = running.gateway.engine
        async with engine.connect() as conn:
            uncommitted = (
                await conn.execute(select(func.count()).where(readings.c.committed_at.is_(None)))
            ).scalar_one()
            sink_batches = (
                await conn.execute(
                    select(batches.c.id, batches.c.committed_at).where(batches.c.client == "sink:http")
                )
            ).all()
        assert uncommitted == 0
        assert all(b.committed_at is not None for b in sink_batches)

    # Billing kept every reading exactly once, each under one key.
    kept = [i for key_ids in billing.kept.values() for i in key_ids]
    assert sorted(kept) == sorted(ids + more)
    assert set(billing.kept) == {b.id for b in sink_batches}
    # The first batch was offered under one key: refused, refused, (restart), too late, acknowledged.
    first = [req for req in billing.requests if req[0] == open_key]
    assert len(first) >= 4 and len({tuple(ids) for _, ids, _ in first}) == 1
    assert all(auth == "Bearer billing-secret" for _, _, auth in billing.requests)


async def test_readings_in_a_sinks_batch_are_never_leased_by_the_pull_api(
    stub: tuple[BillingStub, str], db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    billing, url = stub
    async with gateway_with(db_url, tmp_path, clock, _sinks(url)) as running:
        await push_readings(running, 4)
        await until(lambda: _requested(billing))
        clock.advance(days=30)  # a pull lease would long have expired; the sink's never does
        status, body = await running.post(
            "/api/v1/billing/batches", {"limit": 100}, token="test-billing-token"
        )
        assert status == 201 and isinstance(body, dict)
        assert body["readings"] == []


async def _requested(billing: BillingStub) -> bool:
    return bool(billing.requests)


def test_two_billing_sinks_are_refused(tmp_path: Path) -> None:
    from gateway.config import ConfigError, load_config

    toml = tmp_path / "gateway.toml"
    toml.write_text(
        '[sinks.http]\nenabled = true\nurl = "http://billing/x"\n[sinks.folder]\nenabled = true\npath = "out"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match='at most one enabled sink may have role = "billing"'):
        load_config(toml, {})
    toml.write_text(
        '[sinks.http]\nenabled = true\nurl = "http://billing/x"\n'
        '[sinks.folder]\nenabled = true\npath = "out"\nrole = "copy"\n',
        encoding="utf-8",
    )
    config: Any = load_config(toml, {"GATEWAY_SINKS_HTTP_TOKEN": "from-env"})
    assert config.sinks.http.token == "from-env"
