"""`[modbus]`: the buses and meters the gateway polls itself, declared to the core as the
`modbus` section (pyproject.toml, `meter_gateway.config`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.section import Section


class ModbusMeterConfig(Section):
    """One meter on a Modbus bus: `{unit, serial, profile}`, or `{unit}` to identify it by its registers."""

    unit: int = Field(ge=0, le=255)  # Modbus unit id (1..247 on a serial line)
    serial: str | None = Field(
        None, min_length=1, max_length=64
    )  # registry serial; read from the meter if omitted
    profile: str | None = Field(None, min_length=1)  # firmware profile id; detected if omitted
    host: str | None = None  # TCP buses: this meter's own address (default: the bus's host/port)
    port: int | None = Field(None, ge=1, le=65535)


class ModbusBusConfig(Section):
    """`[[modbus.buses]]`: one serial line (rtu) or one set of TCP meters and gateways (tcp)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    transport: Literal["tcp", "rtu"]
    host: str | None = None  # tcp
    port: int = Field(502, ge=1, le=65535)  # tcp
    device: str | None = None  # rtu: /dev/ttyUSB0, /dev/serial/by-id/...
    baudrate: int = Field(9600, ge=300, le=1_000_000)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    meters: list[ModbusMeterConfig] = Field(min_length=1)
    interval_seconds: float = Field(60.0, gt=0)
    max_concurrency: int = Field(32, ge=1, le=10_000)  # tcp: meters read at once
    latency_ms: int = Field(50, ge=0, le=60_000)  # added to computed timeouts: USB adapter, network
    backoff_initial_seconds: float = Field(5.0, gt=0)  # a silent meter waits this, then twice as long...
    backoff_max_seconds: float = Field(600.0, gt=0)  # ...up to this

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
    profiles_dir: str | None = None  # default: firmware_profiles/ of the installation
    lease_seconds: float = Field(
        30.0, ge=1
    )  # a bus polled by a process that stopped is taken over after this

    @model_validator(mode="after")
    def _unique_names(self) -> ModbusConfig:
        names = [b.name for b in self.buses]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"bus names must be unique: {', '.join(dup)}")
        return self
