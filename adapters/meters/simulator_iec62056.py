"""Simulated IEC 62056-21 meters: the meter's side of a mode C readout, byte for byte as the standard
describes it (adapters/meters/protocols/iec62056_21.py), on a serial line (one end of a socat pty
pair) or behind a TCP port standing for a transparent RS-485/Ethernet converter.

Used by the tests and `meter-gateway demo`; nothing in the gateway's core imports it. The meter
answers a request whose device address is its own (or empty), sends its identification at
300 baud, switches to the baud rate the option select names (a serial line only: a converter's
line keeps its speed), sends the data message built from its profile's data sets, and goes back
to 300 baud.

Faults are set per meter (`SimulatedIecMeter.fault`):
    "silent"    no answer at all
    "bad_bcc"   the data message's BCC is wrong
    "stop"      the data message stops half-way (a meter losing power mid-readout)
    "garbage"   noise instead of the identification message
    "bad_parity" one character of the data message with a wrong parity bit (a line with
                `parity`: the 7E1 characters are framed in software, see below)

`SimulatedIecLine(meters, parity="E")` frames the standard's 7E1 characters itself on a port
or connection that carries 8N1: what it sends has the parity bit in bit 7, exactly the bits a
7E1 line carries, and a character that arrives with a wrong one is dropped, as a meter's UART
drops it. This machine's ptys refuse 7E1 (tcsetattr: EINVAL), so this is how a test plays a 7E1
line on a socat pair.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from adapters.meters.profiles import Profile, Register
from adapters.meters.protocols import iec62056_21 as iec
from adapters.meters.simulated_line import SimulatedLine
from adapters.meters.wire import SEVEN_BITS, add_parity

log = logging.getLogger(__name__)


@dataclass(eq=False)
class SimulatedIecMeter:
    """One meter: its profile, device address, values by register name, identification and fault."""

    profile: Profile
    device_address: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    manufacturer: str = "EKt"  # lower-case third letter: answers after 20 ms (standard's fast reaction)
    ident: str = "CE301v12"
    max_baudrate: int = 9600
    fault: str | None = None
    clockwork: Callable[[Register], Any] | None = None  # when set, each energy value at the moment it is read
    readouts: int = 0  # data messages sent
    baudrates: list[int] = field(default_factory=list)  # the speed of each data message

    def __post_init__(self) -> None:
        for reg in [*self.profile.registers, *self.profile.identification.values()]:
            if reg.quantity.startswith("energy_"):
                self.values.setdefault(
                    reg.name, 1000 + 100 * (int(reg.zone[1:]) if reg.zone and reg.zone[1:] else 0)
                )
            else:
                self.values.setdefault(reg.name, "0")

    def set(self, **values: Any) -> None:
        self.values.update(values)

    def identification(self) -> bytes:
        return iec.Identification(
            self.manufacturer, iec.baud_char(self.max_baudrate), self.ident, self.manufacturer[2].islower()
        ).message()

    def data_lines(self) -> list[str]:
        """The readout: one line per data set address, its values in their positions."""
        by_code: dict[str, dict[int, str]] = {}
        for reg in [*self.profile.registers, *self.profile.identification.values()]:
            value = self.values.get(reg.name)
            if self.clockwork is not None and reg.quantity.startswith("energy_"):
                value = self.clockwork(reg)
            text = (
                ""
                if value is None
                else format(Decimal(str(value)), "f")
                if not isinstance(value, str)
                else value
            )
            unit = f"*{reg.unit}" if reg.unit and text and reg.quantity.startswith("energy_") else ""
            by_code.setdefault(reg.code, {})[max(reg.index, 1)] = f"({text}{unit})"
        lines = []
        for code, slots in by_code.items():
            lines.append(code + "".join(slots.get(i, "()") for i in range(1, max(slots) + 1)))
        return lines


class SimulatedIecLine(SimulatedLine):
    """The meters on one line, answering on a serial device or on a TCP port (behind a converter
    the line's speed never changes)."""

    def __init__(self, meters: Iterable[SimulatedIecMeter], parity: str | None = None) -> None:
        super().__init__()
        self.meters = list(meters)
        self.parity = parity  # E or O: 7-bit characters framed here (see the module's opening)
        self.wire: bytearray = bytearray()  # what reached the meters, as the line carried it

    def meter_for(self, address: str) -> SimulatedIecMeter | None:
        for meter in self.meters:
            if address in ("", meter.device_address):
                return meter
        return None

    def side(self, *, serial: bool) -> asyncio.Protocol:
        return _MeterSide(self, serial=serial)

    async def start_serial(  # type: ignore[override]  # the sign-on speed is the standard's
        self, device: str, bytesize: int = 7, parity: str = "E", stopbits: int = 1
    ) -> None:
        """Answer on a serial device at 300 baud, 7E1 unless told otherwise (a pty may refuse parity)."""
        await super().start_serial(
            device, iec.SIGN_ON_BAUD, bytesize=bytesize, parity=parity, stopbits=stopbits
        )


class _MeterSide(asyncio.Protocol):
    """The meters' end of one line: a small state machine fed by the bytes that arrive."""

    def __init__(self, line: SimulatedIecLine, *, serial: bool) -> None:
        self.line = line
        self.serial = serial
        self.buffer = bytearray()
        self.transport: Any = None
        self.talking: SimulatedIecMeter | None = None  # the meter that sent its identification

    def connection_made(self, transport: Any) -> None:
        self.transport = transport if self.line.parity is None else _ParityFramed(transport, self.line.parity)

    def data_received(self, data: bytes) -> None:
        self.line.wire += data[: max(0, 4096 - len(self.line.wire))]
        if self.line.parity is not None:
            expected = add_parity(data.translate(SEVEN_BITS), self.line.parity)
            data = bytes(c & 0x7F for c, e in zip(data, expected, strict=True) if c == e)
        self.buffer += data
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > 256:
                    self.buffer.clear()
                return
            frame = bytes(self.buffer[: end + 1])
            del self.buffer[: end + 1]
            self._message(frame)

    def _message(self, frame: bytes) -> None:
        start = frame.find(b"/?")
        if start >= 0:
            try:
                address = iec.parse_request(frame[start:])
            except iec.FrameError:
                return
            meter = self.line.meter_for(address)
            self.talking = None
            if meter is not None and meter.fault != "silent":
                self.line.later(self._identify(meter))
            return
        if frame[:1] == bytes([iec.ACK]) and self.talking is not None:
            try:
                baud, mode = iec.parse_ack(frame)
            except iec.FrameError:
                return
            meter, self.talking = self.talking, None
            if mode == "0" and baud in iec.BAUD_RATES:
                self.line.later(self._readout(meter, iec.BAUD_RATES[baud]))

    def _reaction(self, meter: SimulatedIecMeter) -> float:
        return iec.REACTION_MIN_FAST_S if meter.manufacturer[2].islower() else iec.REACTION_MIN_S

    async def _identify(self, meter: SimulatedIecMeter) -> None:
        await asyncio.sleep(self._reaction(meter))
        if meter.fault == "garbage":
            self.transport.write(bytes((0xA5 ^ (i * 37)) & 0x7F for i in range(12)) + b"\r\n")
            return
        self.talking = meter
        self.transport.write(meter.identification())

    async def _readout(self, meter: SimulatedIecMeter, baudrate: int) -> None:
        port = getattr(self.transport, "serial", None)
        if self.serial and port is not None:
            port.baudrate = baudrate
        else:
            baudrate = iec.SIGN_ON_BAUD  # a converter's line keeps its speed
        await asyncio.sleep(self._reaction(meter))
        message = iec.data_message(meter.data_lines())
        if meter.fault == "bad_bcc":
            message = message[:-1] + bytes([message[-1] ^ 0x55])
        if meter.fault == "stop":
            message = message[: len(message) // 2]
        if meter.fault == "bad_parity" and isinstance(self.transport, _ParityFramed):
            self.transport.flip_parity_at = len(message) // 2
        meter.readouts += 1
        meter.baudrates.append(baudrate)
        self.transport.write(message)
        await asyncio.sleep(0.05)
        if self.serial and port is not None:
            port.baudrate = iec.SIGN_ON_BAUD


class _ParityFramed:
    """A transport that sends 7-bit characters with their parity bit in bit 7 (7E1/7O1 over 8N1)."""

    def __init__(self, transport: Any, parity: str) -> None:
        self.inner = transport
        self.parity = parity
        self.flip_parity_at: int | None = None  # the bad_parity fault: this character of the next write

    def write(self, data: bytes) -> None:
        framed = bytearray(add_parity(data, self.parity))
        if self.flip_parity_at is not None:
            framed[self.flip_parity_at] ^= 0x80
            self.flip_parity_at = None
        self.inner.write(bytes(framed))

    def __getattr__(self, name: str) -> Any:  # `serial` (the port's speed), close, ...
        return getattr(self.inner, name)


# -- the demo: SIM-0004, an Energomera CE301 behind a simulated TCP converter --------------------------

DEMO_IEC_PORT = 15021
DEMO_IEC_SERIAL = "SIM-0004"


def demo_iec_meter(profiles: dict[str, Profile] | None = None) -> SimulatedIecMeter:
    """SIM-0004: two-rate counters that only grow (the Modbus demo meters' clockwork)."""
    import functools

    from adapters.meters.profiles import DEFAULT_DIR, load_profiles
    from adapters.meters.simulator import _demo_counter

    profile = (profiles or load_profiles(DEFAULT_DIR))["energomera_ce301"]
    return SimulatedIecMeter(
        profile,
        device_address="4",
        values={"serial": "009217054000004"},
        clockwork=functools.partial(_demo_counter, DEMO_IEC_SERIAL),
    )


def demo_iec_bus(port: int = DEMO_IEC_PORT) -> Any:
    """The demo's IEC 62056-21 bus: SIM-0004 behind a transparent converter on loopback."""
    from adapters.meters.config import ModbusBusConfig, ModbusMeterConfig

    meter = ModbusMeterConfig(unit=1, serial=DEMO_IEC_SERIAL, profile="energomera_ce301", device_address="4")
    return ModbusBusConfig(
        name="demo-iec",
        transport="tcp",
        host="127.0.0.1",
        port=port,
        meters=[meter],
        interval_seconds=10,
        backoff_initial_seconds=1,
    )


async def serve_simulated_iec_meter(host: Any, port: int = DEMO_IEC_PORT) -> None:
    """Background task of the demo: SIM-0004's converter on loopback."""
    line = SimulatedIecLine([demo_iec_meter()])
    await line.start_tcp("127.0.0.1", port)
    log.info("simulated IEC 62056-21 meter SIM-0004 on 127.0.0.1:%d (device address 4)", port)
    try:
        await asyncio.Event().wait()
    finally:
        await line.stop()
