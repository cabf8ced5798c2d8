"""The Mercury 200/201/203/206 driver: the single-phase family's own protocol (Incotex, "Протокол
обмена счётчиков Меркурий 200, 203, 206"; adapters/meters/protocols/mercury200.py has the frames).

One poll: the serial number (command 2Fh) when identification is due, then the energy of the four
tariffs in one request (27h, BCD hundredths of a kWh). There is no channel to open and no
password. The meter is addressed by its four-byte network address: the meter's `network_address`
key, else its configured serial number when that is a number (the factory sets the address from
it). The family sends no refusal frame, so what the poller counts per meter is the line's:
`timeout`, `crc` and `garbage`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from adapters.meters.drivers import OnRequest, Readout, Target
from adapters.meters.profiles import Profile
from adapters.meters.protocols import mercury200 as m
from adapters.meters.stream_link import StreamLink
from adapters.meters.wire import ReadError

IDLE_CHARS = 6  # the longest pause inside an answer, in characters (as the 230 family)


class Mercury200Driver:
    def __init__(self, on_request: OnRequest) -> None:
        self.on_request = on_request

    async def read(self, meter: Target, profile: Profile, *, identify: bool, serial_known: bool) -> Readout:
        link: StreamLink = meter.link
        await link.ensure_open()
        async with link.lock:
            try:
                return await self._poll(link, meter, profile, identify)
            except ReadError:
                # A meter answering after its time-out would answer into the next exchange.
                timing = link.timing
                await link.settle(
                    IDLE_CHARS * timing.char_seconds + link.latency_ms / 1000,
                    m.RESPONSE_S + timing.frame_seconds(m.ENERGY_FRAME),
                )
                raise

    async def _poll(self, link: StreamLink, meter: Target, profile: Profile, identify: bool) -> Readout:
        address = network_address(meter.config)
        assert address is not None  # bus_problems refused the configuration otherwise
        raw: dict[str, Any] = {}
        identity: str | None = None
        status = "absent"
        try:
            if identify and "serial" in profile.identification:
                identity = m.serial_text(await self._exchange(link, address, profile, m.SERIAL))
                raw["serial"] = identity
                status = "read"
            payload = await self._exchange(link, address, profile, m.ENERGY)
            hundredths = m.energy_values(payload)
        except m.FrameError as exc:
            raise ReadError(exc.kind, str(exc)) from None
        raw["energy"] = payload.hex()
        values: dict[str, Decimal | None] = {}
        for reg in profile.energy_registers():
            # index 0: the sum of the tariffs (the answer has no total of its own)
            counted = sum(hundredths.values()) if reg.index == 0 else hundredths[reg.index]
            values[reg.name] = Decimal(counted) * reg.scale
        return Readout(values, identity, status, raw)

    async def _exchange(self, link: StreamLink, address: int, profile: Profile, command: int) -> bytes:
        timing = link.timing
        expected = m.ANSWER_FRAMES[command]
        link.discard_input()
        self.on_request()
        await link.send(m.request(address, command))
        reaction = max(profile.response_time_ms / 1000, m.RESPONSE_S)
        frame = await link.receive(
            m.answer_complete(expected),
            first_byte=reaction + timing.char_seconds,
            idle=max(IDLE_CHARS * timing.char_seconds, 0.005),
            total=reaction + timing.frame_seconds(expected) + IDLE_CHARS * timing.char_seconds,
        )
        return m.check_answer(address, command, frame)


def network_address(config: Any) -> int | None:
    """The meter's four-byte network address: `network_address`, else its serial as a number."""
    given = getattr(config, "network_address", None)
    if given is not None:
        return int(given)
    serial = config.serial or ""
    if serial.isascii() and serial.isdigit() and int(serial) in m.ADDRESSES:
        return int(serial)
    return None


def bus_problems(bus: Any) -> list[str]:
    """What a Mercury 200 bus's configuration cannot work with, as `meters[i].key: why`."""
    return [
        f"meters[{i}].network_address: a Mercury 200 meter needs its network address "
        "(or a serial number that is one: the factory's address)"
        for i, meter in enumerate(bus.meters)
        if network_address(meter) is None
    ]
