"""Simulated Mercury 200/201/203/206 meters: the meter's side of the single-phase family's protocol,
byte for byte as adapters/meters/protocols/mercury200.py describes it, on a serial line (one end of
a pty pair) or behind a TCP port standing for a transparent RS-485/Ethernet converter.

Used by the tests; nothing in the gateway imports it. Each meter answers the requests to its
four-byte network address: its serial number (2Fh) and its energy by tariffs (27h, BCD hundredths
of a kWh). A request with a wrong CRC or an unknown command gets no answer. It is a module of its
own rather than a mode of simulator_mercury.py because the two families share no request: only
the CRC, which comes from protocols/mercury.py.

Faults are set per meter (`SimulatedMercury200Meter.fault`):
    "silent"    no answer at all
    "bad_crc"   answers with a wrong CRC
    "stop"      an energy answer stops half-way (a meter losing power mid-answer)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from adapters.meters.protocols import mercury200 as m
from adapters.meters.protocols.mercury import frame
from adapters.meters.simulated_line import SimulatedLine


@dataclass(eq=False)
class SimulatedMercury200Meter:
    """One meter: its network address, serial number, tariffs 1..4 in hundredths of a kWh, fault."""

    address: int
    serial: int = 20000001
    hundredths: dict[int, int] = field(default_factory=lambda: dict.fromkeys(m.TARIFFS, 0))
    fault: str | None = None
    requests: list[int] = field(default_factory=list)  # commands received, in order

    def set_kwh(self, tariff: int, kwh: Decimal | str | int) -> None:
        self.hundredths[tariff] = int(Decimal(str(kwh)) * 100)

    def answer(self, request: m.Request) -> bytes | None:
        """The frame the meter sends back, or None (no answer)."""
        self.requests.append(request.command)
        head = request.address.to_bytes(4, "big") + bytes([request.command])
        if request.command == m.SERIAL:
            reply = frame(head + self.serial.to_bytes(4, "big"))
        elif request.command == m.ENERGY:
            reply = frame(head + b"".join(m.bcd_bytes(self.hundredths[t]) for t in m.TARIFFS))
        else:
            return None
        if self.fault == "silent":
            return None
        if self.fault == "bad_crc":
            return reply[:-1] + bytes([reply[-1] ^ 0x55])
        if self.fault == "stop" and request.command == m.ENERGY:
            return reply[: len(reply) // 2]
        return reply


class SimulatedMercury200Line(SimulatedLine):
    """The meters on one RS-485 line, answering on a serial device or on a TCP port (the meters'
    factory setting is 9600 baud, 8N1)."""

    def __init__(self, meters: Iterable[SimulatedMercury200Meter]) -> None:
        super().__init__()
        self.meters = list(meters)

    def side(self, *, serial: bool) -> asyncio.Protocol:
        return _LineSide(self)


class _LineSide(asyncio.Protocol):
    """The meters' end of one line: every request is seven bytes, answered by its meter."""

    def __init__(self, line: SimulatedMercury200Line) -> None:
        self.line = line
        self.buffer = bytearray()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= m.REQUEST_FRAME:
            chunk = bytes(self.buffer[: m.REQUEST_FRAME])
            del self.buffer[: m.REQUEST_FRAME]
            try:
                request = m.parse_request(chunk)
            except m.FrameError:
                self.buffer.clear()  # noise or a wrong CRC: the meters wait for the next request
                return
            for meter in self.line.meters:
                if meter.address == request.address:
                    reply = meter.answer(request)
                    if reply is not None:
                        self.transport.write(reply)
