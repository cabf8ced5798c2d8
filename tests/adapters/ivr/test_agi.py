"""The AGI protocol on one connection, against replies as Asterisk writes them: results with
their parenthesised data, key presses, multi-line `520` usage, `510`, hang-ups (`HANGUP`,
`result=-1`, `511`, a closed socket), and random lines that end in a hang-up or a refusal,
never an unhandled error.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.ivr.agi import AgiFailure, AgiHangup, AgiSession, Reply


async def _session() -> tuple[AgiSession, socket.socket]:
    ours, pbx = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    pbx.setblocking(False)
    return AgiSession(reader, writer), pbx


async def _exchange(agi: AgiSession, pbx: socket.socket, reply: bytes, *words: str) -> Reply:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(pbx, reply)
    return await agi.command(*words)


async def test_agi_replies_as_asterisk_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("adapters.ivr.agi.IDLE_SECONDS", 2.0)
    agi, pbx = await _session()
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(
        pbx, b"agi_network: yes\nagi_network_script: readings\nagi_callerid: 79161234567\n\n"
    )
    env = await agi.read_env()
    assert env["agi_network_script"] == "readings" and env["agi_callerid"] == "79161234567"

    reply = await _exchange(agi, pbx, b"200 result= (timeout)\n", "GET", "DATA", "x", "5000", "4")
    assert (reply.result, reply.data) == ("", "timeout")
    reply = await _exchange(agi, pbx, b"200 result=12*5 (timeout)\n", "GET", "DATA", "x", "5000", "9")
    assert (reply.result, reply.data) == ("12*5", "timeout")
    reply = await _exchange(agi, pbx, b"200 result=1 (operator)\n", "GET", "VARIABLE", "IVR_RESULT")
    assert (reply.result, reply.data) == ("1", "operator")

    await loop.sock_sendall(pbx, b"200 result=42 endpos=3200\n")
    assert await agi.stream_file("x", "*") == "*"
    await loop.sock_sendall(pbx, b"200 result=0\n")
    assert await agi.wait_for_digit(100) is None

    await loop.sock_sendall(
        pbx,
        b"520-Invalid command syntax.  Proper usage follows:\n Usage: SAY DIGITS <number> <escape digits>\n"
        b"520 End of proper usage.\n",
    )
    with pytest.raises(AgiFailure, match="Usage: SAY DIGITS"):
        await agi.say("digits", "", "")
    await loop.sock_sendall(pbx, b"510 Invalid or unknown command\n")
    with pytest.raises(AgiFailure, match="510"):
        await agi.command("SAY", "NONSENSE")

    # The caller hangs up while a key is being pressed: the key counts, then nothing more is sent.
    await loop.sock_sendall(pbx, b"HANGUP\n200 result=49\n")
    assert await agi.wait_for_digit(100) == "1"
    sent = pbx.recv(65536).decode()
    assert sent.endswith("SAY NONSENSE\nWAIT FOR DIGIT 100\n") and sent.startswith("GET DATA x 5000 4\n")
    with pytest.raises(AgiHangup):
        await agi.stream_file("x", "")
    with pytest.raises(BlockingIOError):
        pbx.recv(65536)
    await agi.close()
    pbx.close()


async def test_agi_hang_ups() -> None:
    agi, pbx = await _session()
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(pbx, b"200 result=-1 endpos=0\n")
    with pytest.raises(AgiHangup):
        await agi.stream_file("x", "")
    agi, pbx = await _session()
    await loop.sock_sendall(pbx, b"511 Command Not Permitted on a dead channel or intercepted channel\n")
    with pytest.raises(AgiHangup):
        await agi.command("SAY", "NUMBER", "1", '""')
    agi, pbx = await _session()
    pbx.close()
    with pytest.raises(AgiHangup):
        await agi.wait_for_digit(100)


# -- the parser on random input ----------------------------------------------------------------

LINE = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.sampled_from([b"agi_", b"agi_x:", b"200 result=", b"520-", b"511 ", b"HANGUP", b"\r", b":"]),
)


def _run_session(data: bytes, limit: int) -> None:
    async def go() -> None:
        reader = asyncio.StreamReader(limit=limit)
        reader.feed_data(data)
        reader.feed_eof()
        session = AgiSession(reader, _NullWriter())
        try:
            await session.read_env()
            for _ in range(5):
                await session.command("STREAM", "FILE", "x", '""')
        except (AgiHangup, AgiFailure):
            pass

    asyncio.run(go())


class _NullWriter:
    """The PBX's end of the socket: takes the commands and drops them."""

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINE, max_size=12), st.sampled_from([1024, 8192]))
def test_random_agi_lines_end_in_a_hangup_or_a_refusal_never_an_unhandled_error(
    lines: list[bytes], limit: int
) -> None:
    _run_session(b"\n".join(lines) + b"\n", limit)
