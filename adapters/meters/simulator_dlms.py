"""Simulated DLMS/COSEM (СПОДЭС) meters: the server's side of an association and of GETs, byte for
byte as adapters/meters/protocols/dlms_hdlc.py and dlms_apdu.py describe them from the standards,
on a serial line (one end of a socat pty pair), behind a TCP port standing for a transparent
converter (HDLC), or on a TCP port speaking the DLMS wrapper (port 4059 on a real meter).

Used by the tests and `meter-gateway demo`; nothing in the gateway's core imports it. A meter
answers the frames addressed to its physical address (HDLC) or logical device (wrapper): SNRM and
DISC with UA, an AARQ with an AARE (accepted when low-level security brings its password, or for
the public client when the meter has no password; "authentication failure" otherwise), GETs of the
value (2) and scaler_unit (3) of its energy registers and the value of its serial number with the
data, or "object-undefined" for logical names it does not have, and RLRQ with RLRE.

Faults are set per meter (`SimulatedDlmsMeter.fault`):
    "silent"     no answer at all
    "stop"       the answers that carry an APDU stop half-way (a meter losing power mid-answer)
    "bad_fcs"    the answers that carry an APDU have a wrong frame check sequence (HDLC)
    "no_serial"  the serial number's logical name is not there (object-undefined)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from adapters.meters.profiles import Profile, Register
from adapters.meters.protocols import dlms_apdu as apdu
from adapters.meters.protocols import dlms_hdlc as hdlc
from adapters.meters.simulated_line import SimulatedLine

log = logging.getLogger(__name__)

REACTION_S = 0.005  # the meter's pause before it answers
OBJECT_UNDEFINED, READ_WRITE_DENIED = 4, 3


@dataclass(eq=False)
class SimulatedDlmsMeter:
    """One meter: its profile, addresses, password, values by register name (energy in kWh) and fault."""

    profile: Profile
    physical: int = 17
    logical: int = 1
    password: str | None = "12345678"
    values: dict[str, Any] = field(default_factory=dict)
    scaler: int = 0  # the energy registers' scaler: the value sent is Wh / 10**scaler
    fault: str | None = None
    clockwork: Callable[[Register], Any] | None = None  # when set, each energy value at the moment it is read
    associations: int = 0  # associations accepted
    refused: int = 0  # associations refused (wrong password)
    gets: list[tuple[str, int]] = field(default_factory=list)  # (logical name, attribute) of each GET

    def __post_init__(self) -> None:
        for reg in self.profile.energy_registers():
            self.values.setdefault(reg.name, Decimal(1000))
        self.values.setdefault("serial", "04812345")

    def set(self, **values: Any) -> None:
        self.values.update(values)

    def _register(self, code: str) -> Register | None:
        for reg in [*self.profile.energy_registers(), *self.profile.identification.values()]:
            if reg.code == code:
                return reg
        return None

    def answer_get(self, request: apdu.GetRequest) -> bytes:
        code = apdu.obis_text(request.logical_name)
        self.gets.append((code, request.attribute))
        reg = self._register(code)
        if reg is None or (self.fault == "no_serial" and reg.name == "serial"):
            return apdu.get_response(request.invoke, access_result=OBJECT_UNDEFINED)
        if reg.name == "serial":
            if request.attribute != apdu.VALUE_ATTRIBUTE:
                return apdu.get_response(request.invoke, access_result=OBJECT_UNDEFINED)
            return apdu.get_response(request.invoke, apdu.encode_octets(str(self.values["serial"]).encode()))
        if request.attribute == apdu.SCALER_UNIT_ATTRIBUTE:
            return apdu.get_response(request.invoke, apdu.encode_scaler_unit(self.scaler, apdu.UNIT_WH))
        if request.attribute != apdu.VALUE_ATTRIBUTE:
            return apdu.get_response(request.invoke, access_result=OBJECT_UNDEFINED)
        value = self.clockwork(reg) if self.clockwork is not None else self.values.get(reg.name)
        if value is None:
            return apdu.get_response(request.invoke, b"\x00")  # null-data: no value
        raw = Decimal(str(value)) * 1000 / Decimal(10) ** self.scaler
        if raw != raw.to_integral_value():
            raise ValueError(f"{reg.name}={value} kWh is not a whole number at scaler {self.scaler}")
        return apdu.get_response(request.invoke, apdu.encode_unsigned(int(raw)))

    def answer_aarq(self, request: bytes, client: int) -> tuple[bytes, bool]:
        """The AARE, and whether the association is open."""
        aarq = apdu.parse_aarq(request)
        lls = aarq.mechanism == apdu.LOW_LEVEL_SECURITY
        if lls:
            ok = self.password is not None and aarq.password == self.password.encode()
        else:
            ok = self.password is None or client == 16  # the public client needs no password
        if not ok:
            self.refused += 1
            return apdu.aare(1, apdu.AUTHENTICATION_FAILURE, lls=lls), False
        self.associations += 1
        return apdu.aare(0, 0, lls=lls, conformance=apdu.CONFORMANCE_GET), True


class SimulatedDlmsLine(SimulatedLine):
    """The meters on one line or behind one TCP port, speaking HDLC or the wrapper."""

    def __init__(self, meters: Iterable[SimulatedDlmsMeter], framing: str = "hdlc") -> None:
        if framing not in ("hdlc", "wrapper"):
            raise ValueError("framing is hdlc or wrapper")
        super().__init__()
        self.meters = list(meters)
        self.framing = framing

    def side(self, *, serial: bool) -> asyncio.Protocol:
        return _MeterSide(self)


@dataclass
class _Link:
    """A meter's HDLC link state toward the client."""

    connected: bool = False
    associated: bool = False
    send_sequence: int = 0
    receive_sequence: int = 0


class _MeterSide(asyncio.Protocol):
    """The meters' end of one line or connection: frames in, answers out."""

    def __init__(self, line: SimulatedDlmsLine) -> None:
        self.line = line
        self.buffer = bytearray()
        self.transport: Any = None
        self.links: dict[int, _Link] = {}  # by physical address (HDLC) or logical device (wrapper)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        complete = hdlc.frame_complete if self.line.framing == "hdlc" else apdu.wrapped_complete
        while self.buffer:
            try:
                size = complete(bytes(self.buffer))
            except ValueError:
                self.buffer.clear()  # noise: a meter waits for the next frame
                return
            if size is None:
                return
            frame = bytes(self.buffer[:size])
            del self.buffer[:size]
            if self.line.framing == "hdlc":
                self._hdlc(frame)
            else:
                self._wrapped(frame)

    def _later(self, meter: SimulatedDlmsMeter, data: bytes, carries_apdu: bool) -> None:
        if carries_apdu and meter.fault == "stop":
            data = data[: len(data) // 2]
        if carries_apdu and meter.fault == "bad_fcs" and self.line.framing == "hdlc":
            data = data[:-3] + bytes([data[-3] ^ 0x5A]) + data[-2:]

        async def answer() -> None:
            await asyncio.sleep(REACTION_S)
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)

        self.line.later(answer())

    def _apdu(self, meter: SimulatedDlmsMeter, link: _Link, request: bytes, client: int) -> bytes | None:
        if request[:1] == b"\x60":
            answer, link.associated = meter.answer_aarq(request, client)
            return answer
        if request[:1] == b"\x62":
            link.associated = False
            return apdu.RLRE
        if request[:1] == b"\xc0":
            get = apdu.parse_get_request(request)
            if not link.associated:
                return apdu.get_response(get.invoke, access_result=READ_WRITE_DENIED)
            return meter.answer_get(get)
        return None

    def _hdlc(self, raw: bytes) -> None:
        try:
            frame = hdlc.decode(raw)
            server = hdlc.decode_server_address(frame.destination)
        except hdlc.FrameError:
            return
        meter = next(
            (m for m in self.line.meters if (m.physical, m.logical) == (server.physical, server.logical)),
            None,
        )
        if meter is None or meter.fault == "silent":
            return
        link = self.links.setdefault(meter.physical, _Link())
        client = frame.source[0] >> 1

        def reply(control: int, information: bytes = b"") -> None:
            out = hdlc.Frame(frame.source, frame.destination, control, information)
            self._later(meter, out.encode(), bool(information))

        if frame.control == hdlc.SNRM:
            self.links[meter.physical] = _Link(connected=True)
            reply(hdlc.UA)
        elif frame.control == hdlc.DISC:
            reply(hdlc.UA if link.connected else hdlc.DM)
            self.links.pop(meter.physical, None)
        elif frame.is_information and link.connected:
            if frame.send_sequence != link.receive_sequence:
                return  # out of sequence: dropped, as a meter would
            link.receive_sequence = (link.receive_sequence + 1) % 8
            try:
                answer = self._apdu(meter, link, frame.information[len(hdlc.LLC_REQUEST) :], client)
            except apdu.ApduError:
                return
            if answer is None:
                return
            reply(hdlc.i_control(link.send_sequence, link.receive_sequence), hdlc.LLC_RESPONSE + answer)
            link.send_sequence = (link.send_sequence + 1) % 8
        elif not link.connected:
            reply(hdlc.DM)

    def _wrapped(self, raw: bytes) -> None:
        client, logical, request = apdu.unwrap(raw)
        meter = next((m for m in self.line.meters if m.logical == logical), None)
        if meter is None or meter.fault == "silent":
            return
        link = self.links.setdefault(logical, _Link(connected=True))
        try:
            answer = self._apdu(meter, link, request, client)
        except apdu.ApduError:
            return
        if answer is not None:
            self._later(meter, apdu.wrap(logical, client, answer), True)


# -- the demo: SIM-0005, a СПОДЭС meter on the DLMS wrapper ---------------------------------------

DEMO_DLMS_PORT = 14059
DEMO_DLMS_SERIAL = "SIM-0005"
DEMO_DLMS_PASSWORD = "12345678"


def demo_dlms_meter(profiles: dict[str, Profile] | None = None) -> SimulatedDlmsMeter:
    """SIM-0005: two-rate counters that only grow (the Modbus demo meters' clockwork)."""
    import functools

    from adapters.meters.profiles import DEFAULT_DIR, load_profiles
    from adapters.meters.simulator import _demo_counter

    profile = (profiles or load_profiles(DEFAULT_DIR))["spodes_single_phase"]
    return SimulatedDlmsMeter(
        profile,
        password=DEMO_DLMS_PASSWORD,
        values={"serial": "011223344550005"},
        clockwork=functools.partial(_demo_counter, DEMO_DLMS_SERIAL),
    )


def demo_dlms_bus(port: int = DEMO_DLMS_PORT) -> Any:
    """The demo's DLMS bus: SIM-0005 on the wrapper on loopback, read as the СПОДЭС reading client."""
    from adapters.meters.config import ModbusBusConfig, ModbusMeterConfig

    meter = ModbusMeterConfig(
        unit=1, serial=DEMO_DLMS_SERIAL, profile="spodes_single_phase", password=DEMO_DLMS_PASSWORD
    )
    return ModbusBusConfig(
        name="demo-dlms",
        transport="tcp",
        host="127.0.0.1",
        port=port,
        meters=[meter],
        interval_seconds=10,
        backoff_initial_seconds=1,
        dlms_transport="wrapper",
    )


async def serve_simulated_dlms_meter(host: Any, port: int = DEMO_DLMS_PORT) -> None:
    """Background task of the demo: SIM-0005 on loopback."""
    line = SimulatedDlmsLine([demo_dlms_meter()], framing="wrapper")
    await line.start_tcp("127.0.0.1", port)
    log.info("simulated DLMS/COSEM meter SIM-0005 (СПОДЭС) on 127.0.0.1:%d (wrapper)", port)
    try:
        await asyncio.Event().wait()
    finally:
        await line.stop()
