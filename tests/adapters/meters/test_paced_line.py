"""The paced serial line of the tests and benchmarks (adapters/meters/paced_line.py): bytes come out
no sooner than the line's speed allows, at the speed the sending port is set to at that moment,
one direction at a time; an IEC 62056-21 readout that changes speed is paced at each speed."""

from __future__ import annotations

import asyncio
import os
import termios
import time
import tty
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from adapters.meters.drivers.iec62056_21 import IecDriver
from adapters.meters.paced_line import PacedLine
from adapters.meters.simulator_iec62056 import SimulatedIecLine, SimulatedIecMeter
from adapters.meters.stream_link import serial_stream_link
from adapters.meters.wire import LineTiming
from tests.adapters.meters.rig import PROFILES


@pytest.fixture
async def line() -> AsyncIterator[PacedLine]:
    paced = await PacedLine().start()
    yield paced
    await paced.stop()


def open_end(path: str, speed: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    set_speed(fd, speed)
    return fd


def set_speed(fd: int, speed: int) -> None:
    attrs = termios.tcgetattr(fd)
    attrs[4] = attrs[5] = getattr(termios, f"B{speed}")
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


async def read_exactly(fd: int, count: int, within: float = 10.0) -> bytes:
    got = bytearray()
    deadline = time.monotonic() + within
    while len(got) < count and time.monotonic() < deadline:
        try:
            got += os.read(fd, count - len(got))
        except BlockingIOError:
            await asyncio.sleep(0.001)
    return bytes(got)


async def test_bytes_take_their_time_at_the_speed_of_the_sending_port(line: PacedLine) -> None:
    gateway, meters = open_end(line.gateway_end, 9600), open_end(line.meter_end, 9600)
    try:
        data = bytes(range(192))
        started = time.monotonic()
        os.write(gateway, data)
        assert await read_exactly(meters, len(data)) == data
        # 192 characters of 10 bits (8N1) at 9600 baud take 0.2 s on a line; a bare pty takes none
        assert time.monotonic() - started >= 0.9 * 192 * 10 / 9600
        set_speed(meters, 1200)  # the answer goes at the meter port's speed
        started = time.monotonic()
        os.write(meters, b"0123456789" * 3)
        assert await read_exactly(gateway, 30) == b"0123456789" * 3
        assert time.monotonic() - started >= 0.9 * 30 * 10 / 1200
        # half duplex: both sides talking at once share the line
        set_speed(meters, 9600)
        started = time.monotonic()
        os.write(gateway, bytes(96))
        os.write(meters, bytes(96))
        assert len(await read_exactly(meters, 96)) == 96 and len(await read_exactly(gateway, 96)) == 96
        assert time.monotonic() - started >= 0.9 * 192 * 10 / 9600
        assert line.carried == (192 + 96, 30 + 96)
        assert line.busy_seconds == pytest.approx((192 + 96 + 96) * 10 / 9600 + 30 * 10 / 1200)
    finally:
        os.close(gateway)
        os.close(meters)


async def test_an_iec_readout_is_paced_at_300_then_at_the_offered_speed(line: PacedLine) -> None:
    meter = SimulatedIecMeter(PROFILES["energomera_ce301"], device_address="301", values={"serial": "0092"})
    sim = SimulatedIecLine([meter])
    # 8N1 stands for the standard's 7E1 (this machine's ptys refuse parity): both are 10 bits
    await sim.start_serial(line.meter_end, bytesize=8, parity="N", stopbits=1)
    link = serial_stream_link(
        line.gateway_end, LineTiming(300, 8, "N", 1), latency_ms=50, backoff_initial=1, backoff_max=1
    )
    try:
        driver = IecDriver(lambda: None, max_baudrate=9600)
        target = SimpleNamespace(unit=1, device_address="301", link=link, config=None)
        readout = await driver.read(target, PROFILES["energomera_ce301"], identify=True, serial_known=True)
        assert readout.identity == "0092" and meter.baudrates == [9600]
        request, ident, ack = b"/?301!\r\n", meter.identification(), b"\x06050\r\n"
        at_300 = len(request + ident + ack) * 10 / 300
        at_9600 = (line.carried[1] - len(ident)) * 10 / 9600  # the data message
        assert line.busy_seconds == pytest.approx(at_300 + at_9600, rel=0.01)
    finally:
        link.close()
        await sim.stop()
