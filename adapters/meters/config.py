"""`[modbus]`: the buses and meters the gateway polls itself, declared to the core as the
`modbus` section (pyproject.toml, `meter_gateway.config`)."""

from __future__ import annotations

from datetime import time
from typing import Literal

from pydantic import Field, model_validator

from gateway.section import Section


class ModbusMeterConfig(Section):
    """One meter on a Modbus bus: `{unit, serial, profile}`, or `{unit}` to identify it by its registers."""

    unit: int = Field(ge=0, le=255)
    """Modbus unit id (1..247 on a serial line)."""
    serial: str | None = Field(None, min_length=1, max_length=64)
    """The meter's serial in the registry; read from the meter if omitted."""
    profile: str | None = Field(None, min_length=1)
    """Firmware profile id; detected if omitted."""
    host: str | None = None
    """TCP buses: this meter's own address (default: the bus's host)."""
    port: int | None = Field(None, ge=1, le=65535)
    """TCP buses: this meter's own port (default: the bus's port)."""
    device_address: str = Field("", max_length=32, pattern=r"^[\x22-\x2e\x30-\x3e\x40-\x7e]*$")
    """IEC 62056-21: the device address of the sign-on request, at most 32 printable characters
    without / ? ! (default: none, for the only meter on the line)."""
    password: str | None = Field(None, min_length=1, max_length=32, pattern=r"^[\x20-\x7e]+$")
    """The meter's password (DLMS: the low-level security secret of the reading client; Mercury:
    six characters, default 111111 for access level 1, 222222 for level 2)."""
    access_level: Literal[1, 2] = 1
    """Mercury: the access level the channel is opened with (1: reading, 2: administrator)."""
    network_address: int | None = Field(None, ge=0, le=0xFFFFFFFF)
    """Mercury 200/201/203/206: the four-byte network address (default: the serial, when a number)."""
    dlms_client: int | None = Field(None, ge=1, le=127)
    """DLMS: the client address (СПОДЭС: 16 public, 32 reading); default 32 with a password, else 16."""
    dlms_logical: int = Field(1, ge=1, le=0x3FFF)
    """DLMS: the server's logical device (1: the management logical device)."""
    dlms_physical: int | None = Field(None, ge=0x10, le=0x3FFD)
    """DLMS over HDLC: the meter's physical address, 16..16381 (default: unit)."""


class ModbusBusConfig(Section):
    """`[[modbus.buses]]`: one serial line (rtu) or one set of TCP meters and gateways (tcp)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    """The bus's name (A-Z a-z 0-9 . _ -), unique."""
    transport: Literal["tcp", "rtu"]
    """tcp (Modbus TCP) or rtu (a serial line)."""
    host: str | None = None
    """tcp: address of the meters or the gateway to them."""
    port: int = Field(502, ge=1, le=65535)
    """tcp: port."""
    device: str | None = None
    """rtu: the serial device (/dev/ttyUSB0, /dev/serial/by-id/...)."""
    baudrate: int = Field(9600, ge=300, le=1_000_000)
    """rtu: line speed; behind a converter (tcp, a byte protocol): its line's speed, for timeouts."""
    parity: Literal["N", "E", "O"] = "N"
    """rtu: N, E or O."""
    stopbits: Literal[1, 2] = 1
    """rtu: 1 or 2."""
    bytesize: Literal[7, 8] = 8
    """rtu: 7 or 8."""
    software_parity: bool = False
    """IEC 62056-21 and other 7-bit lines: the port or converter carries 8N1 and the gateway adds and
    checks the parity bit (E or O of `parity`; IEC's 7E1 by default) for an adapter that cannot frame 7E1."""
    meters: list[ModbusMeterConfig] = Field(min_length=1)
    """The meters on this bus: [[modbus.buses.meters]] tables."""
    interval_seconds: float = Field(60.0, gt=0)
    """How often each meter is read."""
    max_concurrency: int = Field(32, ge=1, le=10_000)
    """tcp: meters read at once."""
    latency_ms: int = Field(50, ge=0, le=60_000)
    """Added to computed timeouts (USB adapter, network)."""
    backoff_initial_seconds: float = Field(5.0, gt=0)
    """A silent meter waits this, then twice as long..."""
    backoff_max_seconds: float = Field(600.0, gt=0)
    """...up to this."""
    dlms_transport: Literal["hdlc", "wrapper"] | None = None
    """DLMS: hdlc (a serial line or a converter) or wrapper (TCP port 4059); default: hdlc on rtu, wrapper on tcp."""
    billing: Literal["every_poll", "daily", "period"] = "every_poll"
    """What billing receives: every poll, one reading per meter a day or one per billing period (the
    rest kept as interval data; adapters/meters/billing_selection.py)."""
    billing_time: time = time(0, 0)
    """daily, period: the local time ("HH:MM", the account's branch's zone) from which a meter's
    reading of the day (of the period's first window day) goes to billing."""
    intervals_minutes: int = Field(30, ge=0, le=1440)
    """daily, period: polls kept as interval data, at most one per meter per this many minutes; 0: none."""

    @model_validator(mode="after")
    def _transport_keys(self) -> ModbusBusConfig:
        if self.transport == "tcp" and not self.host and any(m.host is None for m in self.meters):
            raise ValueError(f"bus {self.name!r}: transport tcp needs host (on the bus or on every meter)")
        if self.transport == "rtu":
            if not self.device:
                raise ValueError(f"bus {self.name!r}: transport rtu needs device (e.g. /dev/ttyUSB0)")
            if any(m.host is not None or m.port is not None for m in self.meters):
                raise ValueError(f"bus {self.name!r}: host/port of a meter make sense on tcp buses only")
            if any(not 1 <= m.unit <= 247 for m in self.meters):
                raise ValueError(f"bus {self.name!r}: a serial line's unit ids are 1..247")
        seen: set[tuple[str | None, int | None, int]] = set()
        for m in self.meters:
            key = (
                (m.host or self.host, m.port or self.port, m.unit)
                if self.transport == "tcp"
                else (None, None, m.unit)
            )
            if key in seen:
                raise ValueError(f"bus {self.name!r}: unit {m.unit} is listed twice")
            seen.add(key)
        return self


class ModbusConfig(Section):
    """`[modbus]`: meters the gateway polls itself (adapters/meters/poller.py)."""

    buses: list[ModbusBusConfig] = Field(default_factory=list)
    """The buses polled: [[modbus.buses]] tables; none: no meters are polled."""
    profiles_dir: str | None = None
    """Folder of firmware profiles replacing those shipped in the package."""
    lease_seconds: float = Field(30.0, ge=1)
    """A bus polled by a process that stopped is taken over after this."""
    intervals_keep_days: int = Field(400, ge=1, le=36_500)
    """Polled interval data (buses with billing daily or period) older than this is deleted."""

    @model_validator(mode="after")
    def _unique_names(self) -> ModbusConfig:
        names = [b.name for b in self.buses]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"bus names must be unique: {', '.join(dup)}")
        return self
