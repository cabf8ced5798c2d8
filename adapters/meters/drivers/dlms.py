"""The DLMS/COSEM driver (СПОДЭС meters): one association per poll, one GET per value.

Over HDLC (a serial line, or a transparent converter: IEC 62056-46; adapters/meters/protocols/
dlms_hdlc.py) a poll is SNRM/UA, the AARQ/AARE in I-frames, the GETs, DISC/UA. Over the TCP
wrapper (IEC 62056-9-7, port 4059) it is the AARQ/AARE, the GETs and a release (RLRQ/RLRE). The
association uses low-level security with the meter's `password` as the СПОДЭС reading client
(client address 32), or none as the public client (16) when no password is configured.

Each poll reads the serial number (0.0.96.1.0.255, when identification is due) and each energy
register's value (attribute 2); a register's scaler_unit (attribute 3) is read once per meter and
kept while the meter reports the same serial number. Failures raise `ReadError` with the kinds the
poller counts per meter: `auth` (the meter refused the association: wrong password), `timeout`
(no answer, or an answer that stopped), `crc` (a frame check sequence), `garbage`, `exception`
(the meter refused a GET: the object is not there) and `disconnected`.

No DLMS library is used: dlms-cosem (BSL 1.1: production use that competes with its owner's
meter-reading products is excluded, and it installs a top-level `tests` package) and gurux-dlms
(GPL-2.0, synchronous with its own media classes) do not serve a proprietary asyncio gateway; the
few APDUs a reading client needs are written from the standards (protocols/dlms_apdu.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from adapters.meters.drivers import OnRequest, Readout, Target
from adapters.meters.profiles import Profile
from adapters.meters.profiles.dlms_values import register_value
from adapters.meters.profiles.model import Register
from adapters.meters.protocols import dlms_apdu as apdu
from adapters.meters.protocols import dlms_hdlc as hdlc
from adapters.meters.stream_link import StreamLink
from adapters.meters.wire import ReadError

PUBLIC_CLIENT, READING_CLIENT = 16, 32  # СПОДЭС client addresses (SAP)
REPLY_MAX_BYTES = 300  # the longest reply expected to these requests (a frame, or a wrapped APDU)
INTER_OCTET_S = 0.1  # longest pause inside one frame before it counts as stopped


def transport_of(bus: Any, serial: bool) -> str:
    """ "hdlc" or "wrapper": the bus's `dlms_transport`, else HDLC on a serial line and the wrapper on TCP."""
    chosen = getattr(bus, "dlms_transport", None)
    return str(chosen) if chosen else ("hdlc" if serial else "wrapper")


def bus_problems(bus: Any) -> list[str]:
    """What keeps a DLMS bus's meters from being addressed (`load_modbus_profiles` reports them)."""
    problems = []
    if transport_of(bus, bus.transport == "rtu") == "hdlc":
        for i, m in enumerate(bus.meters):
            physical = m.dlms_physical if m.dlms_physical is not None else m.unit
            if not hdlc.PHYSICAL_MIN <= physical <= hdlc.PHYSICAL_MAX:
                problems.append(
                    f"meters[{i}]: an HDLC physical address is 16..16381; set dlms_physical (unit {m.unit})"
                )
    return problems


class _Session:
    """One association's requests over a link: HDLC frames or wrapped APDUs."""

    def __init__(
        self, link: StreamLink, config: Any, transport: str, response_s: float, on_request: OnRequest
    ):
        self.link = link
        self.transport = transport
        self.response_s = response_s
        self.on_request = on_request
        self.client = config.dlms_client or (READING_CLIENT if config.password else PUBLIC_CLIENT)
        self.logical = config.dlms_logical
        physical = config.dlms_physical if config.dlms_physical is not None else config.unit
        self.server = hdlc.ServerAddress(self.logical, physical)
        self.send_sequence = self.receive_sequence = 0

    async def _exchange(self, data: bytes, complete: Any) -> bytes:
        self.on_request()
        await self.link.send(data)
        timing = self.link.timing
        return await self.link.receive(
            complete,
            first_byte=self.response_s + timing.char_seconds,
            idle=max(INTER_OCTET_S, 10 * timing.char_seconds),
            total=self.response_s + timing.frame_seconds(REPLY_MAX_BYTES) + 1.0,
        )

    async def _frame(self, control: int, information: bytes = b"") -> hdlc.Frame:
        request = hdlc.Frame(self.server.encode(), hdlc.client_address(self.client), control, information)
        reply = await self._exchange(request.encode(), hdlc.frame_complete)
        try:
            frame = hdlc.decode(reply)
        except hdlc.FrameError as exc:
            raise ReadError(exc.kind, str(exc)) from None
        try:
            source = hdlc.decode_server_address(frame.source)
        except hdlc.FrameError as exc:
            raise ReadError(exc.kind, str(exc)) from None
        if frame.destination != hdlc.client_address(self.client) or source != self.server:
            raise ReadError("garbage", "an HDLC frame from or to another station")
        return frame

    async def open(self) -> None:
        if self.transport == "wrapper":
            return
        self.link.discard_input()
        frame = await self._frame(hdlc.SNRM)
        if frame.control == hdlc.DM:
            raise ReadError("exception", "the meter refused the HDLC connection (DM)")
        if frame.control != hdlc.UA:
            raise ReadError("garbage", f"the answer to SNRM is control {frame.control:#04x}, not UA")
        self.send_sequence = self.receive_sequence = 0

    async def request(self, data: bytes) -> bytes:
        """One APDU there and its answer back."""
        if self.transport == "wrapper":
            reply = await self._exchange(apdu.wrap(self.client, self.logical, data), apdu.wrapped_complete)
            source, destination, answer = apdu.unwrap(reply)
            if (source, destination) != (self.logical, self.client):
                raise ReadError("garbage", f"a wrapped APDU from wPort {source} to {destination}")
            return answer
        control = hdlc.i_control(self.send_sequence, self.receive_sequence)
        frame = await self._frame(control, hdlc.LLC_REQUEST + data)
        if not frame.is_information or frame.segmented:
            raise ReadError("garbage", f"the answer is control {frame.control:#04x}, not one I-frame")
        if frame.send_sequence != self.receive_sequence:
            raise ReadError("garbage", "an I-frame out of sequence")
        if not frame.information.startswith(hdlc.LLC_RESPONSE):
            raise ReadError("garbage", "an I-frame without the LLC header E6 E7 00")
        self.send_sequence = (self.send_sequence + 1) % 8
        self.receive_sequence = (self.receive_sequence + 1) % 8
        return frame.information[len(hdlc.LLC_RESPONSE) :]

    async def close(self) -> None:
        """Release (wrapper) or disconnect (HDLC); a meter that does not answer is left as it is."""
        try:
            if self.transport == "wrapper":
                await self.request(apdu.RLRQ)
            else:
                await self._frame(hdlc.DISC)
        except ReadError:
            self.abort()

    def abort(self) -> None:
        """After a failure: behind the wrapper the TCP connection goes (the meter drops the association
        with it); HDLC starts each poll with SNRM, which resets the meter's side anyway."""
        if self.transport == "wrapper":
            self.link.close()


class DlmsDriver:
    def __init__(self, on_request: OnRequest, bus: Any) -> None:
        self.on_request = on_request
        self.bus = bus
        self._invoke = 0
        # (link, logical, physical, serial, logical name) -> scaler_unit read from the meter
        self._scaler_units: dict[tuple[str, int, int, str | None, str], Any] = {}

    async def read(self, meter: Target, profile: Profile, *, identify: bool, serial_known: bool) -> Readout:
        link = meter.link
        assert isinstance(link, StreamLink)
        await link.ensure_open()
        config = meter.config
        session = _Session(
            link,
            config,
            transport_of(self.bus, link.serial),
            profile.response_time_ms / 1000,
            self.on_request,
        )
        async with link.lock:
            try:
                await session.open()
                await self._associate(session, config.password)
                readout = await self._read_values(
                    session, profile, identify=identify, serial_known=serial_known
                )
            except ReadError:
                session.abort()
                raise
            await session.close()
        return readout

    async def _associate(self, session: _Session, password: str | None) -> None:
        secret = password.encode("ascii") if password else None
        try:
            answer = apdu.parse_aare(await session.request(apdu.aarq(secret)))
        except apdu.ApduError as exc:
            raise ReadError(exc.kind, str(exc)) from None
        if not answer.accepted:
            auth = answer.user and answer.diagnostic in (apdu.AUTHENTICATION_FAILURE, 14)
            raise ReadError("auth" if auth else "exception", answer.reason())

    async def _get(self, session: _Session, class_id: int, code: str, attribute: int) -> Any:
        self._invoke = (self._invoke + 1) % 16
        request = apdu.get_request(self._invoke, class_id, apdu.obis(code), attribute)
        try:
            return apdu.parse_get_response(await session.request(request), self._invoke)
        except apdu.ApduError as exc:
            raise ReadError(exc.kind, f"{code} attribute {attribute}: {exc}") from None

    async def _read_values(
        self, session: _Session, profile: Profile, *, identify: bool, serial_known: bool
    ) -> Readout:
        serial_reg = profile.identification.get("serial")
        identity: str | None = None
        status = "read" if serial_reg is not None and identify else "absent"
        raw: dict[str, Any] = {"transport": session.transport, "client": session.client}
        if status == "read":
            assert serial_reg is not None
            try:
                identity = apdu.text_of(await self._get(session, apdu.DATA_CLASS, serial_reg.code, 2))
            except ReadError as exc:
                # A meter that refuses its serial number is still read when the configuration gives it.
                if not (serial_known and exc.kind == "exception"):
                    raise
                status = "unavailable"
            raw["serial"] = identity
        values: dict[str, Decimal | None] = {}
        read: dict[str, list[Any]] = {}
        for reg in profile.energy_registers():
            value, scaler_unit = await self._register(session, reg, identity)
            try:
                values[reg.name] = register_value(reg, value, scaler_unit)
            except ValueError as exc:
                raise ReadError("garbage", str(exc)) from None
            read[reg.code] = [value, *(scaler_unit or [])]
        raw["registers"] = read
        return Readout(values, identity, status, raw)

    async def _register(self, session: _Session, reg: Register, identity: str | None) -> tuple[Any, Any]:
        key = (session.link.name, session.server.logical, session.server.physical, identity, reg.code)
        value = await self._get(session, apdu.REGISTER_CLASS, reg.code, apdu.VALUE_ATTRIBUTE)
        if key not in self._scaler_units:
            scaler_unit = await self._get(session, apdu.REGISTER_CLASS, reg.code, apdu.SCALER_UNIT_ATTRIBUTE)
            self._scaler_units[key] = scaler_unit
        return value, self._scaler_units[key]
