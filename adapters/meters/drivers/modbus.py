"""The Modbus driver: a meter's energy counters (and serial-number register) read as register
blocks, adjacent registers merged into one request by the profile's read plan."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from adapters.meters.drivers import OnRequest, Readout, Target
from adapters.meters.modbus_link import ReadError
from adapters.meters.profiles import Profile, ReadBlock, Register, plan_reads, split_block

MODBUS_ILLEGAL_ADDRESS = 2  # exception code: the meter has no such register (Modbus spec 7)


def read_plan(profile: Profile, *, identify: bool = True) -> list[ReadBlock]:
    """Energy counters (and identification registers), merged into as few requests as fit."""
    wanted: list[Register] = [*profile.energy_registers()]
    if identify:
        wanted += profile.identification.values()
    return plan_reads(profile, wanted)


class ModbusDriver:
    def __init__(self, on_request: OnRequest) -> None:
        self.on_request = on_request

    async def read_blocks(
        self, meter: Target, profile: Profile, plan: list[ReadBlock]
    ) -> tuple[dict[str, Decimal | None], list[list[Any]]]:
        values: dict[str, Decimal | None] = {}
        blocks: list[list[Any]] = []
        for block in plan:
            self.on_request()
            words = await meter.link.read(
                meter.unit, block.function, block.address, block.count, profile.response_time_ms
            )
            values.update(split_block(block, words))
            blocks.append([block.function, block.address, words])
        return values, blocks

    async def read(self, meter: Target, profile: Profile, *, identify: bool, serial_known: bool) -> Readout:
        identify = identify and bool(profile.identification)
        try:
            values, blocks = await self.read_blocks(meter, profile, read_plan(profile, identify=identify))
        except ReadError as exc:
            # A meter that refuses its serial-number register (illegal data address) is still read
            # when the configuration gives its serial: the energy registers without identification.
            if not (identify and serial_known and exc.kind == "exception"):
                raise
            values, blocks = await self.read_blocks(meter, profile, read_plan(profile, identify=False))
            return Readout(values, None, "unavailable", {"blocks": blocks})
        serial = values.pop("serial", None) if "serial" in profile.identification else None
        for name in profile.identification:
            values.pop(name, None)
        identity = format(serial, "f") if serial is not None else None
        return Readout(values, identity, "read" if identify else "absent", {"blocks": blocks})
