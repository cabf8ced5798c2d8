"""The IEC 62056-21 driver: a mode C data readout (adapters/meters/protocols/iec62056_21.py says
which clauses of the standard each step follows).

Sign-on at 300 baud 7E1 with the meter's device address, the identification message, the option
select with the fastest baud rate both the meter and the line allow, then the data message at
that speed; its BCC is checked and the profile's data sets (address and position) are taken from
it. Behind a TCP converter the line's speed cannot change from here: the driver selects 300 baud
(the converter's line runs at the sign-on speed).
"""

from __future__ import annotations

import asyncio
import dataclasses

from adapters.meters.drivers import OnRequest, Readout, Target
from adapters.meters.profiles import Profile
from adapters.meters.profiles.named import iec_text, iec_value
from adapters.meters.protocols import iec62056_21 as iec
from adapters.meters.stream_link import StreamLink
from adapters.meters.wire import LineTiming, ReadError

SIGN_ON = LineTiming(iec.SIGN_ON_BAUD, 7, "E", 1)  # the standard's character frame at sign-on


class IecDriver:
    def __init__(self, on_request: OnRequest, max_baudrate: int) -> None:
        self.on_request = on_request
        self.max_baudrate = max_baudrate

    def chosen_baudrate(self, offered: int, can_change: bool) -> int:
        """The speed of the readout: the meter's highest, as far as the line allows."""
        if not can_change:
            return iec.SIGN_ON_BAUD
        fitting = [b for b in iec.BAUD_RATES.values() if b <= min(offered, self.max_baudrate)]
        return max(fitting, default=iec.SIGN_ON_BAUD)

    async def read(self, meter: Target, profile: Profile, *, identify: bool, serial_known: bool) -> Readout:
        link = meter.link
        await link.ensure_open()
        async with link.lock:
            try:
                return await self._readout(link, meter.device_address, profile)
            finally:
                link.set_line(link.sign_on)  # the meter is back at 300 baud after a readout or a failure

    async def _readout(self, link: StreamLink, address: str, profile: Profile) -> Readout:
        sign_on = link.sign_on
        link.set_line(sign_on)
        link.discard_input()
        reaction = profile.response_time_ms / 1000
        self.on_request()
        await link.send(iec.request_message(address))
        frame = await link.receive(
            iec.identification_complete,
            first_byte=reaction + sign_on.char_seconds,
            idle=iec.INTER_CHAR_MAX_S,
            total=reaction + sign_on.frame_seconds(iec.IDENTIFICATION_MAX_BYTES) + iec.INTER_CHAR_MAX_S,
        )
        try:
            ident = iec.parse_identification(frame)
        except iec.FrameError as exc:
            raise ReadError(exc.kind, str(exc)) from None
        baudrate = self.chosen_baudrate(ident.max_baudrate, link.can_set_line)
        # The HHU waits the reaction time before it answers (200 ms, 20 ms if the meter announces it).
        await asyncio.sleep(iec.REACTION_MIN_FAST_S if ident.fast_reaction else iec.REACTION_MIN_S)
        await link.send(iec.ack_message(iec.baud_char(baudrate)))
        await link.drained()
        readout_line = dataclasses.replace(sign_on, baudrate=baudrate)
        link.set_line(readout_line)
        frame = await link.receive(
            iec.data_message_complete,
            first_byte=reaction + readout_line.char_seconds,
            idle=iec.INTER_CHAR_MAX_S,
            total=reaction + readout_line.frame_seconds(iec.MAX_READOUT) + iec.INTER_CHAR_MAX_S,
        )
        try:
            data_sets = iec.parse_data_message(frame)
        except iec.FrameError as exc:
            raise ReadError(exc.kind, str(exc)) from None
        values = {}
        for reg in profile.energy_registers():
            try:
                values[reg.name] = iec_value(reg, data_sets)
            except ValueError as exc:
                raise ReadError("garbage", str(exc)) from None
        identity = None
        serial = profile.identification.get("serial")
        if serial is not None:
            identity = iec_text(serial, data_sets)
        used = {r.code for r in [*profile.energy_registers(), *profile.identification.values()]}
        raw = {
            "identification": frame_text(ident.message()),
            "baudrate": baudrate,
            "data": {code: data_sets[code] for code in sorted(used) if code in data_sets},
        }
        status = "absent" if serial is None else ("read" if identity is not None else "unavailable")
        return Readout(values, identity, status, raw)


def frame_text(frame: bytes) -> str:
    return frame.decode("ascii", "replace").strip()
