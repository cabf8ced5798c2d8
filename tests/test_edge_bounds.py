"""Inputs bounded at the edge of the HTTP channels: a 4xx naming the field, never a 500; slow
clients cut off (header and body read timeouts, over a raw socket); a client that goes away
mid-request logged without a traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.sms.twilio import twilio_signature
from gateway.service import Gateway
from tests.conftest import BILLING_TOKEN, DEVICE_TOKEN, FakeClock, Running, make_config

KEY = "edge-kannel-key"
TWILIO_TOKEN = "edge-twilio-token"


@pytest.fixture
async def edge(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Running]:
    config = make_config(
        db_url,
        tmp_path,
        sms={"kannel_key": KEY, "twilio_auth_token": TWILIO_TOKEN},
        http={"header_timeout_seconds": 1.0, "body_timeout_seconds": 1.0},
    )
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    async with aiohttp.ClientSession() as http:
        yield Running(gateway, f"http://127.0.0.1:{gateway.port}", http, clock)
    await gateway.stop()


GOOD = {"id": "x-1", "meter": "M-1", "taken_at": "2026-11-17T08:00:00Z", "value": "10"}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"taken_at": "9999-12-31T23:59:59Z"}, "taken_at"),
        ({"taken_at": "0001-01-01T00:00:00+14:00"}, "taken_at"),
        ({"taken_at": "1999-12-31T23:59:59Z"}, "taken_at"),
        ({"account": "10\x0000001"}, "account"),
        ({"account": "1" * 33}, "account"),
        ({"meter": "M-\x001"}, "meter"),
        ({"meter": "M" * 65}, "meter"),
        ({"id": "x\x00y"}, "id"),
        ({"id": "x\ny"}, "id"),
        ({"id": "x" * 101}, "id"),
        ({"value": None, "values": {"T\x00": "1"}}, "values"),
        ({"value": None, "values": {"T12345": "1"}}, "values"),
        ({"value": "1\x002"}, "values.T"),
        ({"value": "1" * 33}, "values.T"),
    ],
)
async def test_a_device_item_out_of_bounds_gets_422_naming_the_field(
    edge: Running, change: dict[str, Any], named: str
) -> None:
    item = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    status, body = await edge.post("/api/v1/readings", {"readings": [GOOD, item]}, token=DEVICE_TOKEN)
    assert status == 422 and isinstance(body, dict), body
    assert body["error"]["code"] == "bad_item"
    assert f"readings[1].{named}" in body["error"]["message"]


async def _kannel(r: Running, **params: str) -> tuple[int, str]:
    base = {"from": "+79161234567", "to": "7377", "text": "12345", "id": "k-1", "key": KEY}
    async with r.http.get(r.base + "/channels/sms/kannel", params={**base, **params}) as resp:
        return resp.status, await resp.text()


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"from": "+7" + "9" * 140}, "from"),
        ({"from": "+7916\x001234567"}, "from"),
        ({"id": "k\x001"}, "id"),
        ({"id": "k" * 101}, "id"),
        ({"text": "1" * 1601}, "text"),
    ],
)
async def test_a_kannel_parameter_out_of_bounds_gets_400_naming_it(
    edge: Running, params: dict[str, str], named: str
) -> None:
    status, body = await _kannel(edge, **params)
    assert status == 400 and named in body, body


async def test_control_characters_in_an_sms_text_are_read_as_spaces(edge: Running) -> None:
    status, body = await _kannel(edge, text="1000001\x0012345", id="k-nul")
    assert (status, body) == (200, "Принято: 12345 (л/с 1000001). №1")


async def test_a_twilio_field_out_of_bounds_gets_400_naming_it(edge: Running) -> None:
    url = edge.base + "/channels/sms/twilio"
    form = {"MessageSid": "SM1", "From": "+7" + "9" * 40, "To": "7377", "Body": "12345"}
    headers = {"X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, url, form.items())}
    async with edge.http.post(url, data=form, headers=headers) as resp:
        assert resp.status == 400 and "From" in await resp.text()


async def test_a_billing_batch_id_with_a_nul_is_not_found(edge: Running) -> None:
    status, body = await edge.post("/api/v1/billing/batches/ab%00cd/commit", token=BILLING_TOKEN)
    assert status == 404 and isinstance(body, dict) and body["error"]["code"] == "batch_not_found"


# -- slow and vanishing clients, over a raw socket ----------------------------------------------


async def _drip(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, data: bytes) -> bytes:
    """Send `data` a byte every 0.2 s until the server closes; what it answered."""
    answer = bytearray()

    async def read_all() -> None:
        try:
            while chunk := await reader.read(65536):
                answer.extend(chunk)
        except ConnectionError:
            pass

    reading = asyncio.create_task(read_all())
    for byte in data:
        if reading.done():
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.sleep(0.2)
    await asyncio.wait_for(reading, 30)  # a hang fails the test instead of stalling it
    return bytes(answer)


async def test_headers_sent_byte_by_byte_are_cut_off(edge: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Slow-%d: y\r\n" % i for i in range(40))
    answer = await _drip(writer, reader, head + b"\r\n")
    writer.close()
    assert answer == b""  # closed before the headers were complete: nothing answered


async def test_a_body_slower_than_allowed_gets_408_and_the_connection_closed(edge: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
    writer.write(
        b"POST /api/v1/readings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + DEVICE_TOKEN.encode() + b"\r\nContent-Length: 400\r\n\r\n"
    )
    answer = await _drip(writer, reader, b'{"readings": [' + b" " * 380 + b"]}")
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ") and b"body_timeout" in answer  # and then closed


async def test_a_client_going_away_mid_body_is_logged_without_a_traceback(
    edge: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
    writer.write(
        b"POST /api/v1/readings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + DEVICE_TOKEN.encode()
        + b'\r\nContent-Length: 1000\r\n\r\n{"readings": ['
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    for _ in range(100):
        if any("client went away" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    assert any("client went away" in r.getMessage() for r in caplog.records)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_header_over_the_limit_is_refused_with_400_and_one_quiet_log_line(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp refuses it itself; the log gets one INFO line, not an ERROR with a traceback that
    any client could repeat to fill the log."""
    from gateway.logs import MalformedRequestFilter

    logging.getLogger("aiohttp.server").addFilter(quiet := MalformedRequestFilter())
    try:
        with caplog.at_level(logging.INFO, logger="aiohttp.server"):
            async with running.http.get(running.base + "/healthz", headers={"X-Big": "x" * 20_000}) as resp:
                assert resp.status == 400
            await asyncio.sleep(0.1)
    finally:
        logging.getLogger("aiohttp.server").removeFilter(quiet)
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records, "aiohttp logged nothing: the test no longer sees what it checks"
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in records)
    assert any("malformed request refused with 400" in r.getMessage() for r in records)


def test_the_gateways_logging_quiets_malformed_requests() -> None:
    from gateway.logs import MalformedRequestFilter, setup_logging

    root, server = logging.getLogger(), logging.getLogger("aiohttp.server")
    handlers, level, filters = root.handlers[:], root.level, server.filters[:]
    try:
        setup_logging("INFO")  # what `meter-gateway run` does first
        assert any(isinstance(f, MalformedRequestFilter) for f in server.filters)
    finally:
        root.handlers[:], server.filters[:] = handlers, filters
        root.setLevel(level)
