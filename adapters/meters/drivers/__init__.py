"""Drivers: how a meter of one protocol is read. The bus worker (adapters/meters/poller.py) keeps
the scheduling, back-off, health, metrics, replacement detection and validation for every
protocol; a driver only turns one poll into a `Readout` or a `ReadError`.

A profile names its protocol (`protocol = "modbus"` by default); `driver_for` gives the driver:

- `modbus`: registers read by function 3/4 over RTU or TCP (drivers/modbus.py);
- `iec62056-21`: a mode C data readout over a serial line or a TCP converter (drivers/iec62056_21.py);
- `dlms`: DLMS/COSEM (СПОДЭС) GETs by logical name over HDLC or the TCP wrapper (drivers/dlms.py);
- `mercury`: Incotex's protocol of the Mercury 230/234 over a serial line or a TCP converter
  (drivers/mercury.py);
- `mercury200`: the single-phase Mercury 200/201/203/206's own protocol (drivers/mercury200.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from adapters.meters.profiles import Profile


@dataclass(slots=True)
class Readout:
    """What one poll of a meter gave."""

    values: dict[str, Decimal | None]  # energy register name -> value in the register's unit (None: no value)
    identity: str | None = None  # the serial number the meter reports (None: not read this time)
    # "read": identity came from the meter; "unavailable": the meter refused the identification
    # request, the energy was read without it; "absent": the profile has no identification
    identification: str = "absent"
    raw: dict[str, Any] = field(default_factory=dict)  # what came over the wire, kept with the reading


class Target(Protocol):
    """The meter as a driver needs it (the worker's MeterState)."""

    unit: int
    device_address: str
    link: Any
    config: Any  # the meter's ModbusMeterConfig: a driver's own keys (password, addresses)
    # the registry's zones of the meter (None: not known): a driver asking one request per value
    # (Mercury) may leave out the zones nobody bills
    zones: tuple[str, ...] | None


class Driver(Protocol):
    async def read(self, meter: Target, profile: Profile, *, identify: bool, serial_known: bool) -> Readout:
        """One poll. `identify`: ask for the identification too; `serial_known`: the configuration
        gives the serial, so a meter refusing its identification is still read (README, item
        "A meter without an identification register")."""
        ...


OnRequest = Callable[[], None]  # called once per request put on the wire (the requests metric)


def driver_for(protocol: str, *, on_request: OnRequest, max_baudrate: int, bus: Any = None) -> Driver:
    """The driver of a protocol; `max_baudrate`: the fastest the bus's line may go (IEC 62056-21);
    `bus`: the bus's configuration (DLMS: HDLC or the wrapper)."""
    if protocol == "modbus":
        from adapters.meters.drivers.modbus import ModbusDriver

        return ModbusDriver(on_request)
    if protocol == "iec62056-21":
        from adapters.meters.drivers.iec62056_21 import IecDriver

        return IecDriver(on_request, max_baudrate)
    if protocol == "dlms":
        from adapters.meters.drivers.dlms import DlmsDriver

        return DlmsDriver(on_request, bus)
    if protocol == "mercury":
        from adapters.meters.drivers.mercury import MercuryDriver

        return MercuryDriver(on_request)
    if protocol == "mercury200":
        from adapters.meters.drivers.mercury200 import Mercury200Driver

        return Mercury200Driver(on_request)
    raise ValueError(f"no driver for protocol {protocol!r}")
