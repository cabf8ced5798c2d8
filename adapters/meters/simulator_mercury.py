"""Simulated Mercury 230/234 meters: the meter's side of Incotex's protocol, byte for byte as
adapters/meters/protocols/mercury.py describes it, on a serial line (one end of a pty pair) or
behind a TCP port standing for a transparent RS-485/Ethernet converter.

Used by the tests, the benchmark and `meter-gateway demo`; nothing in the gateway's core imports
it. Each meter answers requests to its network address (or to the universal address 0): the test
request, opening its channel with the password of an access level (any other password is refused
with a non-zero state), closing it, its serial number and date of manufacture, and the energy
accumulated from reset per tariff (A+, A-, R+, R-). Reading without an open channel is answered
with state 5, as the meter does once its channel has timed out (`close_channel`). A request with
a wrong CRC gets no answer.

Faults are set per meter (`SimulatedMercuryMeter.fault`):
    "silent"    no answer at all
    "bad_crc"   answers with a wrong CRC
    "stop"      an energy answer stops half-way (a meter losing power mid-answer)
    "closed"    every read is answered "channel not open", even right after opening it
    "garbage"   noise instead of the answer
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from adapters.meters.profiles import Register
from adapters.meters.protocols import mercury as m
from adapters.meters.simulated_line import SimulatedLine

log = logging.getLogger(__name__)


@dataclass(eq=False)
class SimulatedMercuryMeter:
    """One meter: its network address, serial number, counters in Wh by tariff, passwords, fault.

    `energy[tariff] = (A+, A-)` in Wh (None: the meter has no such value); tariff 0 is the sum.
    With `clockwork`, the A+ of a tariff is asked of it at the moment it is read (the demo)."""

    address: int
    serial: str = "12345678"
    energy: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)
    passwords: dict[int, str] = field(default_factory=lambda: dict(m.DEFAULT_PASSWORDS))
    fault: str | None = None
    clockwork: Callable[[int], int] | None = None
    opened_level: int | None = None  # the access level of the open channel; None: closed
    requests: list[int] = field(default_factory=list)  # request codes received, in order
    refused_passwords: int = 0

    def __post_init__(self) -> None:
        for tariff in m.TARIFFS:
            self.energy.setdefault(tariff, (1_000_000 + 100_000 * tariff, None))

    def set_kwh(
        self, tariff: int, kwh: Decimal | str | int, export: Decimal | str | int | None = None
    ) -> None:
        """Set a tariff's counters in kWh (stored in Wh, as the meter counts)."""
        self.energy[tariff] = (
            int(Decimal(str(kwh)) * 1000),
            None if export is None else int(Decimal(str(export)) * 1000),
        )

    def close_channel(self) -> None:
        """The meter's channel times out: the next read is answered "channel not open"."""
        self.opened_level = None

    def answer(self, request: m.Request) -> bytes | None:
        """The frame the meter sends back, or None (no answer)."""
        self.requests.append(request.code)
        reply = self._answer(request)
        if reply is None or self.fault == "silent":
            return None
        if self.fault == "bad_crc":
            return reply[:-1] + bytes([reply[-1] ^ 0x55])
        if self.fault == "garbage":
            return bytes((0xA5 ^ (i * 37)) & 0xFF for i in range(len(reply)))
        if self.fault == "stop" and request.code == m.READ_ARRAY:
            return reply[: len(reply) // 2]
        return reply

    def _state(self, code: int) -> bytes:
        return m.frame(bytes([self.address, code]))

    def _answer(self, request: m.Request) -> bytes | None:
        code, params = request.code, request.params
        if code == m.TEST:
            return self._state(m.OK)
        if code == m.OPEN:
            level, password = params[0], params[1:7]
            wanted = self.passwords.get(level)
            if wanted is None or m.password_bytes(wanted) != password:
                self.refused_passwords += 1
                return self._state(m.BAD_REQUEST)
            self.opened_level = level
            return self._state(m.OK)
        if code == m.CLOSE:
            self.opened_level = None
            return self._state(m.OK)
        if self.opened_level is None or self.fault == "closed":
            return self._state(m.NOT_OPEN)
        if code == m.READ_PARAMETER and params[:1] == bytes([m.PARAMETER_SERIAL]):
            return m.frame(bytes([self.address]) + m.serial_payload(self.serial))
        if code == m.READ_ARRAY and len(params) == 2 and params[0] >> 4 == m.ARRAY_FROM_RESET:
            tariff = params[1]
            if tariff not in m.TARIFFS:
                return self._state(m.BAD_REQUEST)
            a_plus, a_minus = self.energy.get(tariff, (None, None))
            if self.clockwork is not None:
                a_plus = self.clockwork(tariff)
            payload = m.energy_bytes(a_plus) + m.energy_bytes(a_minus) + m.NO_VALUE + m.NO_VALUE
            return m.frame(bytes([self.address]) + payload)
        return self._state(m.BAD_REQUEST)


class SimulatedMercuryLine(SimulatedLine):
    """The meters on one RS-485 line, answering on a serial device or on a TCP port (the meters'
    factory setting is 9600 baud, 8N1)."""

    def __init__(self, meters: Iterable[SimulatedMercuryMeter], reaction_s: float = 0.0) -> None:
        super().__init__()
        self.meters = list(meters)
        self.reaction_s = reaction_s  # how long a meter thinks before it answers

    def meter_for(self, address: int) -> SimulatedMercuryMeter | None:
        for meter in self.meters:
            if address in (m.UNIVERSAL, meter.address):
                return meter
        return None

    def side(self, *, serial: bool) -> asyncio.Protocol:
        return _LineSide(self)


class _LineSide(asyncio.Protocol):
    """The meters' end of one line: requests framed by their length, answered in turn."""

    def __init__(self, line: SimulatedMercuryLine) -> None:
        self.line = line
        self.buffer = bytearray()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer:
            try:
                size = m.request_length(bytes(self.buffer))
            except m.FrameError:
                self.buffer.clear()  # noise on the line: the meters wait for the next request
                return
            if size is None:
                return
            frame = bytes(self.buffer[:size])
            del self.buffer[:size]
            try:
                request = m.parse_request(frame)
            except m.FrameError:
                continue  # a wrong CRC: no meter answers
            meter = self.line.meter_for(request.address)
            if meter is None or request.address == m.BROADCAST:
                continue
            reply = meter.answer(request)
            if reply is None:
                continue
            if self.line.reaction_s:
                self.line.later(self._later(reply))
            else:
                self.transport.write(reply)

    async def _later(self, reply: bytes) -> None:
        await asyncio.sleep(self.line.reaction_s)
        self.transport.write(reply)


# -- the demo: SIM-0006, a Mercury 234 behind 100/5 A current transformers, behind a converter --

DEMO_MERCURY_PORT = 15022
DEMO_MERCURY_SERIAL = "SIM-0006"
DEMO_MERCURY_ADDRESS = 6


def demo_mercury_meter() -> SimulatedMercuryMeter:
    """SIM-0006: two-rate counters that only grow (the Modbus demo meters' clockwork), in Wh.

    Its registry row gives it 100/5 A current transformers: billing sees the register times 20."""
    from adapters.meters.simulator import _demo_counter

    def clockwork(tariff: int) -> int:
        zone = "T" if tariff == 0 else f"T{tariff}"
        reg = Register(name=f"import_{zone.lower()}", quantity="energy_import", zone=zone)
        # a twentieth of a flat's use: the meter counts behind 100/5 A transformers
        return int(_demo_counter(DEMO_MERCURY_SERIAL, reg) * 1000 / 20)

    return SimulatedMercuryMeter(DEMO_MERCURY_ADDRESS, serial="23400006", clockwork=clockwork)


def demo_mercury_bus(port: int = DEMO_MERCURY_PORT) -> Any:
    """The demo's Mercury bus: SIM-0006 behind a transparent converter on loopback."""
    from adapters.meters.config import ModbusBusConfig, ModbusMeterConfig

    meter = ModbusMeterConfig(unit=DEMO_MERCURY_ADDRESS, serial=DEMO_MERCURY_SERIAL, profile="mercury_234")
    return ModbusBusConfig(
        name="demo-mercury",
        transport="tcp",
        host="127.0.0.1",
        port=port,
        meters=[meter],
        interval_seconds=10,
        backoff_initial_seconds=1,
    )


async def serve_simulated_mercury_meter(host: Any, port: int = DEMO_MERCURY_PORT) -> None:
    """Background task of the demo: SIM-0006's converter on loopback."""
    line = SimulatedMercuryLine([demo_mercury_meter()])
    await line.start_tcp("127.0.0.1", port)
    log.info(
        "simulated Mercury 234 SIM-0006 on 127.0.0.1:%d (network address %d)", port, DEMO_MERCURY_ADDRESS
    )
    try:
        await asyncio.Event().wait()
    finally:
        await line.stop()
