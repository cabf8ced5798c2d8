"""The Mercury 230/234 driver: Incotex's binary protocol (adapters/meters/protocols/mercury.py says
which sections of the manufacturer's description each frame follows).

One poll: open the meter's channel with the configured access level and password (once; the
channel stays open between polls and is opened again when the meter says it is not open any
more), read the serial number when identification is due, then the energy accumulated from
reset for each tariff the profile maps (one request per tariff: 0 the sum, 1..4 the tariffs),
taking A+ for import registers and A- for export registers, in Wh.

What the poller counts per meter: `auth` when the meter refuses to open its channel (a wrong
password or access level), `closed` when it says the channel is not open right after it was
opened, `exception` for another refusal, `timeout`, `crc` and `garbage` for the line.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from adapters.meters.drivers import OnRequest, Readout, Target
from adapters.meters.profiles import Profile
from adapters.meters.protocols import mercury as m
from adapters.meters.stream_link import StreamLink
from adapters.meters.wire import ReadError

VALUE_OF = {"energy_import": "A+", "energy_export": "A-"}  # quantity -> the value of an energy answer
IDLE_CHARS = 6  # the longest pause inside an answer, in characters (the description's frame timeout)


class MercuryDriver:
    def __init__(self, on_request: OnRequest) -> None:
        self.on_request = on_request
        # (link, network address) of the channels this process has open; forgotten on any failure
        self._open: set[tuple[int, int]] = set()

    async def read(self, meter: Target, profile: Profile, *, identify: bool, serial_known: bool) -> Readout:
        link: StreamLink = meter.link
        await link.ensure_open()
        async with link.lock:
            try:
                return await self._poll(link, meter, profile, identify, serial_known)
            except ReadError:
                self._open.discard((id(link), meter.unit))
                # A meter answering after its time-out would answer into the next exchange.
                timing = link.timing
                await link.settle(
                    IDLE_CHARS * timing.char_seconds + link.latency_ms / 1000,
                    m.response_seconds(timing.baudrate) + timing.frame_seconds(m.ENERGY_FRAME),
                )
                raise

    async def _poll(
        self, link: StreamLink, meter: Target, profile: Profile, identify: bool, serial_known: bool
    ) -> Readout:
        address = meter.unit
        raw: dict[str, Any] = {}
        identity: str | None = None
        status = "absent"
        if identify and "serial" in profile.identification:
            try:
                payload = await self._ask(link, meter, profile, m.serial_request(address), m.SERIAL_FRAME)
            except ReadError as exc:
                # A meter refusing its serial number is still read when the configuration gives it.
                if not (serial_known and exc.kind == "exception"):
                    raise
                status = "unavailable"
            else:
                try:
                    identity = m.serial_text(payload)
                except m.FrameError as exc:
                    raise ReadError(exc.kind, str(exc)) from None
                raw["serial"] = identity
                status = "read"
        values: dict[str, Decimal | None] = {}
        answers: dict[str, str] = {}
        for tariff in tariffs_to_read(profile, meter.zones):
            payload = await self._ask(link, meter, profile, m.energy_request(address, tariff), m.ENERGY_FRAME)
            answers[str(tariff)] = payload.hex()
            try:
                counted = m.energy_values(payload)
            except m.FrameError as exc:
                raise ReadError(exc.kind, str(exc)) from None
            for reg in profile.energy_registers():
                if reg.index == tariff:
                    wh = counted[VALUE_OF[reg.quantity]]
                    values[reg.name] = None if wh is None else Decimal(wh) * reg.scale
        raw["energy"] = answers
        return Readout(values, identity, status, raw)

    async def _ask(
        self, link: StreamLink, meter: Target, profile: Profile, request: bytes, expected: int
    ) -> bytes:
        """The payload of the answer to `request`, the channel opened first if need be (and again,
        once, when the meter says it has closed it)."""
        key = (id(link), meter.unit)
        for attempt in (1, 2):
            if key not in self._open:
                await self._open_channel(link, meter, profile)
                self._open.add(key)
            try:
                return await self._exchange(link, meter.unit, profile, request, expected)
            except ReadError as exc:
                if exc.code != m.NOT_OPEN:
                    raise
                self._open.discard(key)
                if attempt == 2:
                    raise ReadError(
                        "closed", "the meter says its channel is not open right after opening it"
                    ) from None
        raise AssertionError("unreachable")

    async def _open_channel(self, link: StreamLink, meter: Target, profile: Profile) -> None:
        level, password = password_of(meter)
        try:
            await self._exchange(
                link, meter.unit, profile, m.open_request(meter.unit, level, password), m.STATE_FRAME
            )
        except ReadError as exc:
            if exc.kind == "exception":
                raise ReadError(
                    "auth",
                    f"the meter refuses to open its channel at access level {level} (state {exc.code}: "
                    f"{m.STATES.get(exc.code or 0, 'unknown')}); check the password",
                    exc.code,
                ) from None
            raise

    async def _exchange(
        self, link: StreamLink, address: int, profile: Profile, request: bytes, expected: int
    ) -> bytes:
        timing = link.timing
        link.discard_input()
        self.on_request()
        await link.send(request)
        reaction = max(profile.response_time_ms / 1000, m.response_seconds(timing.baudrate))
        frame = await link.receive(
            m.answer_complete(expected),
            first_byte=reaction + timing.char_seconds,
            idle=max(IDLE_CHARS * timing.char_seconds, 0.005),
            total=reaction + timing.frame_seconds(expected) + IDLE_CHARS * timing.char_seconds,
        )
        try:
            payload = m.check_answer(address, frame, expected)
        except m.FrameError as exc:
            raise ReadError(exc.kind, str(exc), exc.state) from None
        if expected == m.STATE_FRAME and m.state_of(payload) != m.OK:
            state = m.state_of(payload)
            raise ReadError("exception", f"state {state}: {m.STATES.get(state, 'unknown state')}", state)
        return payload


def bus_problems(bus: Any) -> list[str]:
    """What a Mercury bus's configuration cannot work with, as `meters[i].key: why` (for ConfigError)."""
    problems = []
    for i, meter in enumerate(bus.meters):
        if meter.unit not in m.ADDRESSES and meter.unit != m.UNIVERSAL:
            problems.append(
                f"meters[{i}].unit: a Mercury network address is 1..240 (0: the only meter on the line)"
            )
        if meter.password is not None:
            try:
                m.password_bytes(meter.password)
            except ValueError as exc:
                problems.append(f"meters[{i}].password: {exc}")
    return problems


def password_of(meter: Target) -> tuple[int, str]:
    """The access level and password a meter's channel is opened with (the factory password of
    the level when the configuration gives none)."""
    config = meter.config
    level = int(getattr(config, "access_level", m.LEVEL_READ) or m.LEVEL_READ)
    password = getattr(config, "password", None) or m.DEFAULT_PASSWORDS[level]
    return level, password


def tariffs_to_read(profile: Profile, zones: tuple[str, ...] | None) -> list[int]:
    """The tariffs a poll asks for: those of the registers billed for the registry's zones (one
    request each: a two-rate meter is read with 2, not 5), every tariff the profile maps when the
    registry does not know the meter."""
    if zones is None:
        return sorted({r.index for r in profile.energy_registers()})
    billed = profile.billed_registers()
    return sorted({billed[z].index for z in zones if z in billed})
