"""Property-based tests (hypothesis): whatever a sender writes, the grammar answers without an
exception, and the device and SMS routes of a real gateway answer without a 5xx.

The HTTP properties run their examples in a worker thread with a blocking client, while the
gateway serves them on the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.sms.twilio import twilio_signature
from gateway.grammar import Command, ParsedReading, ParseFailure, parse_message
from gateway.service import Gateway
from tests.conftest import DEVICE_TOKEN, FakeClock, Running, make_config

KEY = "prop-kannel-key"
TWILIO_TOKEN = "prop-twilio-token"
HTTP_EXAMPLES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# What residents type, and what they might: digits, separators, zone words, Cyrillic and Latin
# look-alikes, commands, and now and then anything at all.
_PIECES = st.sampled_from(
    ["1000001", "12345", "12 345", "12345,6", "0.001", "Т1", "T2", "т3", "день", "ночь", "#", "СЧ-123",
     "да", "стоп", "?", " ", "\n", "\x00", "-", "+", "99999999999999999999", "ЛС", "л/с", "показания"]
)  # fmt: skip
RESIDENT_TEXT = st.one_of(st.text(max_size=200), st.lists(_PIECES, max_size=12).map(" ".join))


@given(RESIDENT_TEXT)
@settings(max_examples=500, deadline=None)
def test_the_grammar_answers_any_text(text: str) -> None:
    parsed = parse_message(text)
    assert isinstance(parsed, ParsedReading | ParseFailure | Command)


@pytest.fixture
async def served(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Running]:
    config = make_config(db_url, tmp_path, sms={"kannel_key": KEY, "twilio_auth_token": TWILIO_TOKEN})
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    async with aiohttp.ClientSession() as http:
        yield Running(gateway, f"http://127.0.0.1:{gateway.port}", http, clock)
    await gateway.stop()


def _call(request: urllib.request.Request) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def _in_thread(prop: Callable[[], None]) -> None:
    await asyncio.to_thread(prop)


_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40))
_DATES = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00", "2026-11-17T08:00:00Z", "", "Z"]),
    st.text(max_size=30),
)
_ITEM = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=120), st.integers(), _SCALAR),
        "meter": st.one_of(st.sampled_from(["M-1", "M-2", "M-3", "M-4A"]), st.text(max_size=80), _SCALAR),
        "account": st.one_of(st.sampled_from(["1000001", "1000002"]), st.text(max_size=40), _SCALAR),
        "taken_at": st.one_of(_DATES, _SCALAR),
        "value": st.one_of(st.decimals(allow_nan=False).map(str), _SCALAR),
        "values": st.one_of(
            st.dictionaries(
                st.one_of(st.sampled_from(["T", "T1", "T2", "T3"]), st.text(max_size=6)), _SCALAR, max_size=5
            ),
            _SCALAR,
        ),
    },
)
_BODY = st.one_of(
    st.fixed_dictionaries({"readings": st.lists(_ITEM, max_size=4)}),
    st.lists(_ITEM, max_size=4),
    _SCALAR,
)


async def test_device_pushes_never_get_a_5xx(served: Running) -> None:
    url = served.base + "/api/v1/readings"

    @given(_BODY, st.text(max_size=80))
    @HTTP_EXAMPLES
    def prop(body: Any, device: str) -> None:
        headers = {"Authorization": f"Bearer {DEVICE_TOKEN}", "Content-Type": "application/json"}
        if device and device.isprintable() and device.isascii():
            headers["X-Device-Id"] = device
        data = json.dumps(body).encode()
        status, answer = _call(urllib.request.Request(url, data=data, headers=headers, method="POST"))
        assert status < 500, answer

    await _in_thread(prop)


async def test_sms_webhooks_never_get_a_5xx(served: Running) -> None:
    kannel = served.base + "/channels/sms/kannel"
    twilio = served.base + "/channels/sms/twilio"

    @given(
        st.one_of(st.sampled_from(["+79161234567", "+79161234568"]), st.text(max_size=150)),
        st.one_of(st.text(max_size=120), st.uuids().map(str)),
        RESIDENT_TEXT,
        st.binary(max_size=60),
        st.sampled_from(["", "UTF-8", "UTF-16BE", "windows-1251", "nonsense"]),
        st.booleans(),
    )
    @HTTP_EXAMPLES
    def prop(phone: str, mid: str, text: str, raw: bytes, charset: str, post: bool) -> None:
        params = {"from": phone, "to": "7377", "text": text, "id": mid, "key": KEY, "charset": charset}
        query = urllib.parse.urlencode(params)
        if charset == "UTF-16BE":  # a message smsbox did not recode: raw bytes
            query += "&text=" + urllib.parse.quote_from_bytes(raw)
        if post:
            request = urllib.request.Request(
                kannel,
                data=query.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                method="POST",
            )
        else:
            request = urllib.request.Request(kannel + "?" + query)
        status, answer = _call(request)
        assert status < 500, answer
        form = {"MessageSid": mid, "From": phone, "To": "7377", "Body": text}
        signature = twilio_signature(TWILIO_TOKEN, twilio, form.items())
        request = urllib.request.Request(
            twilio,
            data=urllib.parse.urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
            method="POST",
        )
        status, answer = _call(request)
        assert status < 500, answer

    await _in_thread(prop)
