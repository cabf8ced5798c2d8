"""The FastAGI server under abuse, over real TCP against a running gateway: idle connections,
too many of them, silent ones and over-long lines never keep a real call from being answered, and
never raise an unhandled exception. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.ivr.agi import IvrServer
from gateway.service import Gateway
from tests.adapters.ivr.fake_pbx import Pbx, keys
from tests.conftest import FakeClock, make_config

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _start(db_url: str, tmp_path: Path, clock: FakeClock, **ivr: Any) -> tuple[Gateway, IvrServer]:
    config = make_config(db_url, tmp_path, ivr={"enabled": True, "port": 0, "timeout_seconds": 1, **ivr})
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    server = gateway.health_probes["ivr"]
    assert isinstance(server, IvrServer)
    await asyncio.wait_for(server.ready.wait(), 5)
    return gateway, server


@pytest.fixture
async def agi(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[IvrServer]:
    # A long handshake timeout: the idle connections stay open for as long as the test needs.
    gateway, server = await _start(db_url, tmp_path, clock, handshake_timeout_seconds=60, max_connections=300)
    yield server
    await gateway.stop()


async def idle(server: IvrServer, n: int) -> list[Conn]:
    """`n` connections that send one line of the AGI environment and then nothing."""
    conns = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network: yes\n")
        conns.append((reader, writer))
    return conns


async def until(condition: Any) -> None:
    """Wait for the server to have taken in what the test sent (bounded, not timed)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server never got there")


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """The gateway closed the connection: end of stream, or a reset (it had unread bytes)."""
    try:
        return await asyncio.wait_for(reader.read(), 30) == b""
    except ConnectionResetError:
        return True


def close(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.close()


async def real_call(server: IvrServer, value: str, **kw: Any) -> Pbx:
    return await asyncio.wait_for(
        Pbx(server.port or 0, ["1", *keys(value + "#"), "1", None], **kw).call(), 30
    )


async def test_idle_connections_do_not_make_a_real_caller_busy(agi: IvrServer) -> None:
    conns = await idle(agi, 200)  # as many as max_calls
    await until(lambda: agi.connections == 200)
    pbx = await real_call(agi, "12345")
    assert pbx.variables == {"IVR_RESULT": "done"} and "accepted" in pbx.heard
    assert agi.active == 0 and agi.connections == 200  # they never started a call
    close(conns)


async def test_connections_over_the_cap_are_closed_at_once(agi: IvrServer) -> None:
    conns = await idle(agi, 3000)
    await until(lambda: agi.connections + agi.refused == 3000)
    assert agi.connections == 300 and agi.refused == 2700
    closed = 0
    for reader, _ in conns[300:]:
        closed += await closed_by_server(reader)
    assert closed == 2700
    close(conns)
    await until(lambda: agi.connections == 0)
    pbx = await real_call(agi, "12345")
    assert pbx.variables == {"IVR_RESULT": "done"}


async def test_a_silent_connection_is_closed_after_the_handshake_timeout(
    db_url: str, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    gateway, server = await _start(db_url, tmp_path, clock, handshake_timeout_seconds=0.2)
    try:
        caplog.set_level(logging.INFO, "adapters.ivr.agi")
        ((reader, writer),) = await idle(server, 1)
        assert await closed_by_server(reader)
        writer.close()
        assert "no AGI environment within 0.2s" in caplog.text
        assert server.outcomes == {"error": 1} and server.calls == 0
    finally:
        await gateway.stop()


@pytest.mark.parametrize("size", [9000, 70000])
async def test_an_over_long_line_closes_the_connection_cleanly(
    agi: IvrServer, size: int, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", agi.port)
    writer.write(b"agi_network_script: " + b"x" * size + b"\n")
    assert await closed_by_server(reader)
    writer.close()
    assert "a line over the length limit" in caplog.text
    assert "Unhandled exception" not in caplog.text
    # ... and in the middle of a call: the PBX answers a command with a line that never ends.
    pbx = Pbx(
        agi.port or 0, ["1", *keys("12345#"), "1", None], refuse={"STREAM FILE": ["200 " + "y" * size + "\n"]}
    )
    await asyncio.wait_for(pbx.call(), 30)
    assert "Unhandled exception" not in caplog.text
    pbx = await real_call(agi, "12345")
    assert pbx.variables == {"IVR_RESULT": "done"}
