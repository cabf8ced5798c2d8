"""Simulated Modbus meters: pymodbus servers holding a firmware profile's register map.

Used by `meter-gateway demo` (SIM-0001..3 on a loopback Modbus TCP server whose counters grow),
by the tests (over TCP and over a serial line made of a socat pty pair) and by the load test.
This is a demo and test aid, not part of the core: nothing in the gateway's core imports it.

The register memory is laid out from the same read plan the poller uses, so the words between
mapped registers of one request exist (as zeros, like a real meter's unused registers) and
everything else answers "illegal data address", as a real meter does.

Faults are set per meter (`SimulatedMeter.fault`):
    "silent"     no answer at all
    "bad_crc"    the reply's CRC is wrong (RTU)
    "garbage"    noise instead of the reply
    "exception"  a Modbus exception response (device failure)
    "drop"       the server closes the TCP connection instead of answering
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from adapters.meters.profiles import DEFAULT_DIR, Profile, Register, encode, load_profiles, plan_reads

if TYPE_CHECKING:
    from adapters.meters.config import ModbusConfig
    from gateway.host import Host

log = logging.getLogger(__name__)

PROFILES_DIR = DEFAULT_DIR
DEMO_MODBUS_PORT = 15020
# serial -> (unit, profile, serial-number register). SIM-0001/2 are two-rate meters in the demo
# registry (T1;T2), SIM-0003 three-rate: the profiles are chosen to have those tariff registers.
DEMO_METERS = {
    "SIM-0001": (1, "schneider_iem3255", 31000001),
    "SIM-0002": (2, "abb_b23", 31000002),
    "SIM-0003": (3, "abb_b23", 31000003),
}
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def memory_blocks(profile: Profile) -> list[tuple[int, int, int]]:
    """(function, address, count) of the register memory a simulated meter of `profile` has."""
    regs = [*profile.registers, *profile.identification.values()]
    return [(b.function, b.address, b.count) for b in plan_reads(profile, regs)]


@dataclass(eq=False)
class SimulatedMeter:
    """One meter: a unit id, a profile, register values (by register name), and an optional fault."""

    profile: Profile
    unit: int
    values: dict[str, Any] = field(default_factory=dict)
    # when set, the value of each register at the moment it is read (the demo's growing counters)
    clockwork: Callable[[Register], Any] | None = None
    fault: str | None = None
    reads: int = 0  # read requests answered (or refused) by this meter

    def __post_init__(self) -> None:
        self._blocks = memory_blocks(self.profile)
        for reg in [*self.profile.registers, *self.profile.identification.values()]:
            self.values.setdefault(reg.name, _default_value(reg))

    def set(self, **values: Any) -> None:
        """Change register values (by name); the next read sees them."""
        self.values.update(values)

    def device(self) -> SimDevice:
        holding = [
            SimData(a, values=[0] * c, datatype=DataType.REGISTERS) for f, a, c in self._blocks if f == 3
        ]
        inputs = [
            SimData(a, values=[0] * c, datatype=DataType.REGISTERS) for f, a, c in self._blocks if f == 4
        ]
        # pymodbus needs every table non-empty; a register at 0xFFFF stands in for an absent one
        holding = holding or [SimData(0xFFFF, values=[0], datatype=DataType.REGISTERS)]
        inputs = inputs or [SimData(0xFFFF, values=[0], datatype=DataType.REGISTERS)]
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(id=self.unit, simdata=(bits, list(bits), holding, inputs), action=self._action)

    def current(self) -> dict[str, Any]:
        """Register values now."""
        if self.clockwork is None:
            return self.values
        out = dict(self.values)
        for reg in self.profile.energy_registers():
            out[reg.name] = self.clockwork(reg)
        return out

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.reads += 1
        if self.fault == "exception":
            return ExcCodes.DEVICE_FAILURE
        values = self.current()
        for reg in [*self.profile.registers, *self.profile.identification.values()]:
            if reg.function != function_code or reg.end <= address or reg.address >= address + count:
                continue
            offset = reg.address - start_address
            registers[offset : offset + reg.word_count] = encode(reg, values.get(reg.name))
        return None


def _default_value(reg: Register) -> Any:
    if reg.quantity.startswith("energy_"):
        return 1000 + 100 * (int(reg.zone[1:]) if reg.zone and reg.zone[1:] else 0)
    if reg.name == "serial":
        return 12345678
    if reg.quantity == "voltage":
        return 230
    if reg.quantity == "frequency":
        return 50
    return 1


class SimulatedBus:
    """A pymodbus server (TCP or RTU) answering for several simulated meters, with faults."""

    def __init__(self, meters: Iterable[SimulatedMeter]) -> None:
        self.meters = {m.unit: m for m in meters}
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self.port: int | None = None
        self._rtu = False

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on host:port (0: a free port); returns the port."""
        self._rtu = False
        self.server = ModbusTcpServer(
            [m.device() for m in self.meters.values()], address=(host, port), trace_packet=self._trace
        )
        await self.server.serve_forever(background=True)
        transport: Any = self.server.transport
        self.port = int(transport.sockets[0].getsockname()[1])
        return self.port

    async def start_rtu(
        self, device: str, baudrate: int = 9600, parity: str = "N", stopbits: int = 1
    ) -> None:
        """Answer on a serial device (e.g. one end of a socat pty pair) with RTU framing."""
        self._rtu = True
        self.server = ModbusSerialServer(
            [m.device() for m in self.meters.values()],
            framer=FramerType.RTU,
            port=device,
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            reconnect_delay=0,
            trace_packet=self._trace,
        )
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending or not data:
            return data
        unit = data[0] if self._rtu else (data[6] if len(data) > 6 else -1)
        meter = self.meters.get(unit)
        fault = meter.fault if meter else None
        if fault == "silent":
            return b""
        if fault == "bad_crc":
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        if fault == "garbage":
            return bytes((0xA5 ^ (i * 37)) & 0xFF for i in range(len(data)))
        if fault == "drop" and self.server is not None:
            for conn in list(self.server.active_connections.values()):
                transport = conn.transport
                if transport is not None:
                    asyncio.get_running_loop().call_soon(transport.close)
            return b""
        return data


def demo_meters(profiles: Mapping[str, Profile] | None = None) -> list[SimulatedMeter]:
    """SIM-0001..3: tariff counters that only grow, even across demo restarts."""
    profiles = profiles or load_profiles(PROFILES_DIR)
    return [
        SimulatedMeter(
            profiles[profile_id], unit, {"serial": number}, clockwork=functools.partial(_demo_counter, serial)
        )
        for serial, (unit, profile_id, number) in DEMO_METERS.items()
    ]


def _counter(serial: str, zone_index: int, now: datetime, epoch: datetime) -> Decimal:
    """A steady load of a few hundred watts since `epoch`: the value only grows, across restarts too."""
    watts = 150 + 90 * (int(serial[-1]) + zone_index)
    kwh = Decimal(watts) * Decimal((now - epoch).total_seconds()) / Decimal(3_600_000)
    return (Decimal(1000 * (zone_index + 1)) + kwh).quantize(Decimal("0.01"))


def _demo_counter(serial: str, reg: Register) -> Decimal:
    now = datetime.now(UTC).replace(microsecond=0)
    if reg.quantity != "energy_import":
        return Decimal(0)
    if reg.zone == "T":  # the total of the tariffs the demo registry knows
        return sum((_counter(serial, i, now, EPOCH) for i in range(3)), Decimal(0))
    index = int(reg.zone[1:]) - 1 if reg.zone else 0
    return _counter(serial, index, now, EPOCH) if index < 3 else Decimal(0)


def demo_modbus_config(current: ModbusConfig, port: int = DEMO_MODBUS_PORT) -> ModbusConfig:
    """The `[modbus]` section for the demo: one TCP bus with SIM-0001..3, unless buses are configured.

    SIM-0003 is listed without a profile: the poller detects it from its identification registers.
    """
    from adapters.meters.config import ModbusBusConfig, ModbusMeterConfig

    if current.buses:
        return current
    meters = [
        ModbusMeterConfig(unit=unit, serial=serial, profile=None if serial == "SIM-0003" else profile)
        for serial, (unit, profile, _) in DEMO_METERS.items()
    ]
    bus = ModbusBusConfig(
        name="demo-tcp",
        transport="tcp",
        host="127.0.0.1",
        port=port,
        meters=meters,
        interval_seconds=10,
        backoff_initial_seconds=1,
    )
    return current.model_copy(update={"buses": [bus], "lease_seconds": 15})


async def serve_simulated_meters(host: Host, port: int = DEMO_MODBUS_PORT) -> None:
    """Background task of the demo: the simulated meters' Modbus TCP server on loopback."""
    bus = SimulatedBus(demo_meters())
    await bus.start_tcp("127.0.0.1", port)
    log.info("simulated Modbus meters SIM-0001..3 on 127.0.0.1:%d (units 1-3)", port)
    try:
        await asyncio.Event().wait()
    finally:
        await bus.stop()
