"""The HTTP surface as clients see it: health, metrics, bad input -> 4xx JSON, limits on bodies and
clients that leave. Device push has its own tests (tests/adapters/devices/test_push.py)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import BILLING_TOKEN, DEVICE_TOKEN, Running


def _is_error(body: object, code: str) -> bool:
    return (
        isinstance(body, dict)
        and body.get("error", {}).get("code") == code
        and bool(body["error"]["message"])
    )


async def test_healthz_reports_the_database(running: Running) -> None:
    status, body = await running.get("/healthz")
    assert status == 200 and isinstance(body, dict)
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"


async def test_metrics_count_verdicts_and_reasons(running: Running) -> None:
    await running.push(
        {"id": "m-1", "meter": "M-1", "value": "100"}, {"id": "m-2", "meter": "M-1", "value": "x"}
    )
    status, text = await running.get("/metrics")
    assert status == 200 and isinstance(text, str)
    assert 'gateway_verdicts_total{channel="device",status="accepted"} 1.0' in text
    assert 'gateway_verdicts_total{channel="device",status="rejected"} 1.0' in text
    assert 'gateway_reasons_total{channel="device",code="bad_value"} 1.0' in text
    assert 'gateway_billing_backlog{branch="default"} 1.0' in text


BAD_REQUESTS = [
    # (method, path, body bytes, headers, status, error code)
    ("GET", "/api/v1/nothing-here", b"", {}, 404, "not_found"),
    (
        "POST",
        "/api/v1/billing/batches",
        b'{"limit": "ten"}',
        {"Authorization": f"Bearer {BILLING_TOKEN}"},
        400,
        "bad_limit",
    ),
    (
        "POST",
        "/api/v1/billing/batches",
        b'{"limit": 0}',
        {"Authorization": f"Bearer {BILLING_TOKEN}"},
        400,
        "bad_limit",
    ),
    (
        "POST",
        "/api/v1/billing/batches",
        b"[1]",
        {"Authorization": f"Bearer {BILLING_TOKEN}"},
        400,
        "bad_request",
    ),
    (
        "POST",
        "/api/v1/billing/batches",
        b"{",
        {"Authorization": f"Bearer {BILLING_TOKEN}"},
        400,
        "malformed_json",
    ),
    (
        "POST",
        "/api/v1/billing/batches/nope/commit",
        b"",
        {"Authorization": f"Bearer {BILLING_TOKEN}"},
        404,
        "batch_not_found",
    ),
    ("GET", "/api/v1/billing/sla", b"", {"Authorization": f"Bearer {DEVICE_TOKEN}"}, 403, "forbidden"),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "code"), BAD_REQUESTS)
async def test_bad_requests_get_a_4xx_json_error(
    running: Running, method: str, path: str, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    async with running.http.request(method, running.base + path, data=body, headers=headers) as resp:
        payload = await resp.json(content_type=None)
        assert resp.status == status, payload
        assert resp.content_type == "application/json"
        assert _is_error(payload, code), payload


async def test_huge_body_is_refused_with_413(running: Running) -> None:
    huge = b"[" + b'{"meter": "M-1", "value": "1"},' * 200_000 + b"{}]"
    async with running.http.post(
        running.base + "/api/v1/readings", data=huge, headers={"Authorization": f"Bearer {DEVICE_TOKEN}"}
    ) as resp:
        assert resp.status == 413
        assert _is_error(await resp.json(content_type=None), "body_too_large")


async def test_server_survives_a_client_that_disconnects(running: Running) -> None:
    timeout = aiohttp.ClientTimeout(total=0.001)
    try:
        async with running.http.post(
            running.base + "/api/v1/readings",
            json=[{"id": "gone", "meter": "M-1", "value": "9"}],
            headers={"Authorization": f"Bearer {DEVICE_TOKEN}"},
            timeout=timeout,
        ) as resp:
            await resp.read()
    except (TimeoutError, aiohttp.ClientError):
        pass
    results = await running.push({"id": "gone", "meter": "M-1", "value": "9"})
    assert results[0]["status"] == "accepted"
