"""Device push, `POST /api/v1/readings`, as devices see it: a verdict per item, retries answered
with the same receipt, bad input -> 4xx JSON, `[devices] max_items`, a bad item refusing its batch."""

from __future__ import annotations

import pytest

from adapters.device_items.config import DevicesConfig
from tests.conftest import BILLING_TOKEN, DEVICE_TOKEN, Running


def _is_error(body: object, code: str) -> bool:
    return (
        isinstance(body, dict)
        and body.get("error", {}).get("code") == code
        and bool(body["error"]["message"])
    )


async def test_device_push_answers_a_verdict_per_item(running: Running) -> None:
    results = await running.push(
        {"id": "d-1", "meter": "M-1", "value": "12345.6"},
        {"id": "d-2", "meter": "M-2", "values": {"T1": 1000, "T2": 500.5}},
        {"id": "d-3", "meter": "NOPE", "value": "1"},
        {"id": "d-4", "meter": "M-2", "values": {"T1": "100"}},
    )
    assert [r["status"] for r in results] == ["accepted", "accepted", "rejected", "rejected"]
    assert [r["id"] for r in results] == ["d-1", "d-2", "d-3", "d-4"]
    assert results[0]["readings"][0]["value"] == "12345.6"
    assert results[1]["readings"][1] == {
        "reading_id": results[1]["readings"][1]["reading_id"],
        "zone": "T2",
        "value": "500.5",
    }
    assert results[2]["reasons"][0]["code"] == "unknown_meter"
    assert "NOPE" in results[2]["reasons"][0]["message_ru"]
    assert results[3]["reasons"][0]["code"] == "zones_mismatch"
    assert "Т2" in results[3]["reasons"][0]["message_ru"]


async def test_device_retry_gets_the_same_receipt(running: Running) -> None:
    first = await running.push({"id": "r-1", "meter": "M-1", "value": "500"})
    again = await running.push({"id": "r-1", "meter": "M-1", "value": "500"})
    assert first[0]["duplicate"] is False and again[0]["duplicate"] is True
    assert again[0]["receipt"] == first[0]["receipt"]
    assert again[0]["readings"][0]["reading_id"] == first[0]["readings"][0]["reading_id"]


BAD_REQUESTS = [
    # (method, path, body bytes, headers, status, error code)
    (
        "POST",
        "/api/v1/readings",
        b"{not json",
        {"Authorization": f"Bearer {DEVICE_TOKEN}"},
        400,
        "malformed_json",
    ),
    (
        "POST",
        "/api/v1/readings",
        b'{"readings": "x"}',
        {"Authorization": f"Bearer {DEVICE_TOKEN}"},
        422,
        "bad_body",
    ),
    ("POST", "/api/v1/readings", b"[]", {"Authorization": f"Bearer {DEVICE_TOKEN}"}, 422, "bad_body"),
    ("POST", "/api/v1/readings", b"", {"Authorization": f"Bearer {DEVICE_TOKEN}"}, 422, "bad_body"),
    (
        "POST",
        "/api/v1/readings",
        b'[{"meter": 5, "value": "1"}]',
        {"Authorization": f"Bearer {DEVICE_TOKEN}"},
        422,
        "bad_item",
    ),
    (
        "POST",
        "/api/v1/readings",
        b'[{"meter": "M-1", "value": true}]',
        {"Authorization": f"Bearer {DEVICE_TOKEN}"},
        422,
        "bad_item",
    ),
    (
        "POST",
        "/api/v1/readings",
        b'[{"meter": "M-1", "value": {"a": 1}}]',
        {"Authorization": f"Bearer {DEVICE_TOKEN}"},
        422,
        "bad_item",
    ),
    (
        "POST",
        "/api/v1/readings",
        b'[{"meter": "M-1", "value": "1", "taken_at": "yesterday"}]',
        {"Authorization": f"Bearer {DEVICE_TOKEN}"},
        422,
        "bad_item",
    ),
    (
        "POST",
        "/api/v1/readings",
        b'[{"meter": "M-1", "value": "1", "taken_at": "2026-11-17T10:00:00"}]',
        {"Authorization": f"Bearer {DEVICE_TOKEN}"},
        422,
        "bad_item",
    ),
    (
        "POST",
        "/api/v1/readings",
        b'[{"meter": "M-1", "value": "1", "id": [1]}]',
        {"Authorization": f"Bearer {DEVICE_TOKEN}"},
        422,
        "bad_item",
    ),
    ("POST", "/api/v1/readings", b"[1, 2]", {"Authorization": f"Bearer {DEVICE_TOKEN}"}, 422, "bad_item"),
    ("POST", "/api/v1/readings", b"[]", {}, 401, "unauthorized"),
    ("POST", "/api/v1/readings", b"[]", {"Authorization": "Bearer wrong"}, 403, "forbidden"),
    ("POST", "/api/v1/readings", b"[]", {"Authorization": f"Bearer {BILLING_TOKEN}"}, 403, "forbidden"),
    ("POST", "/api/v1/readings", b"[]", {"Authorization": "Basic abc"}, 401, "unauthorized"),
    ("GET", "/api/v1/readings", b"", {}, 405, "method_not_allowed"),
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


async def test_too_many_items_is_refused(running: Running) -> None:
    items = [
        {"meter": "M-1", "value": str(i)}
        for i in range(running.gateway.config.section("devices", DevicesConfig).max_items + 1)
    ]
    status, body = await running.post("/api/v1/readings", items, token=DEVICE_TOKEN)
    assert status == 413 and _is_error(body, "too_many_items")


async def test_a_bad_item_refuses_the_whole_batch_and_stores_nothing(running: Running) -> None:
    status, body = await running.post(
        "/api/v1/readings", [{"id": "ok", "meter": "M-1", "value": "7"}, {"meter": "M-1"}], token=DEVICE_TOKEN
    )
    assert status == 422 and isinstance(body, dict) and "readings[1]" in body["error"]["message"]
    results = await running.push({"id": "ok", "meter": "M-1", "value": "7"})
    assert results[0]["duplicate"] is False  # the refused batch left nothing behind
