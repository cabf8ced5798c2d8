"""Firmware profiles' data model: register types, zones, quantities, errors and the frozen records
that the loader builds and the codec, planner and checker read."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Context, Decimal
from pathlib import Path
from typing import Literal, get_args

ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
RegisterType = Literal[
    "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64", "bcd16", "bcd32"
]
Quantity = Literal[
    "energy_import",
    "energy_export",
    "energy_total",
    "energy_net",
    "power",
    "voltage",
    "current",
    "frequency",
    "power_factor",
    "active_tariff",
]
Zone = Literal["T", "T1", "T2", "T3", "T4"]
# The protocols a profile may name; the bus worker reads a meter with the driver of its profile's
# protocol (adapters/meters/drivers/).
ProtocolName = Literal["modbus", "iec62056-21", "dlms", "mercury", "mercury200"]

BYTE_ORDERS: tuple[str, ...] = get_args(ByteOrder)
ZONES: tuple[str, ...] = get_args(Zone)
PROTOCOLS: tuple[str, ...] = get_args(ProtocolName)
QUANTITIES: tuple[str, ...] = get_args(Quantity)
ENERGY_QUANTITIES: tuple[str, ...] = tuple(q for q in QUANTITIES if q.startswith("energy_"))
# Which counter of a zone is the reading billed, when a profile does not say (`billed_quantities`):
# the import counter first (a household's consumption), else the total, else the net counter.
DEFAULT_BILLED: tuple[str, ...] = ("energy_import", "energy_total", "energy_net")
# The units an energy register may declare, as kWh per unit (case does not matter); a register
# without a unit counts kWh.
KWH_PER_UNIT: dict[str, Decimal] = {
    "wh": Decimal("0.001"),
    "kwh": Decimal(1),
    "mwh": Decimal(1000),
    "": Decimal(1),
}
IDENTIFICATION_QUANTITY = "identification"
DEFAULT_MAX_GAP_WORDS = 8
MODBUS_MAX_READ_WORDS = 125
MISSING = "missing"

# type name -> (words, kind); kind: "u" unsigned, "i" signed, "f" IEEE float, "bcd"
TYPES: dict[str, tuple[int, str]] = {
    "uint16": (1, "u"),
    "int16": (1, "i"),
    "uint32": (2, "u"),
    "int32": (2, "i"),
    "uint64": (4, "u"),
    "int64": (4, "i"),
    "float32": (2, "f"),
    "float64": (4, "f"),
    "bcd16": (1, "bcd"),
    "bcd32": (2, "bcd"),
}

NAME_RE = r"^[a-z][a-z0-9_]*$"
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
DECIMAL_CONTEXT = Context(prec=400)  # float64 reaches 1.8e308: keep every digit exact


# --------------------------------------------------------------------------- errors


class ProfileError(ValueError):
    """A profile file is unusable; str() names the file, the key path and the reason."""

    def __init__(
        self, path: str | Path, key: str, reason: str, *, more: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.path = str(path)
        self.key = key
        self.reason = reason
        self.problems: list[tuple[str, str]] = [(key, reason), *more]
        super().__init__(self._render())

    def _render(self) -> str:
        return "\n".join(f"{self.path}: {key}: {reason}" for key, reason in self.problems)

    def __str__(self) -> str:
        return self._render()


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class Register:
    """One value in a meter's register map (or an identification register)."""

    name: str
    quantity: str
    zone: str | None
    # Modbus: function code, protocol address, type and byte order of the words
    function: int = 0
    address: int = 0
    type: str = ""
    scale: Decimal = Decimal(1)
    unit: str = ""
    byte_order: str = "ABCD"
    nan_values: tuple[int, ...] = ()
    # Protocols that name their values (IEC 62056-21: the data set's address, e.g. "1.8.1";
    # Mercury: the request, e.g. "energy_from_reset") and the value's position in the answer
    code: str = ""
    index: int = 0

    @property
    def word_count(self) -> int:
        """Number of 16-bit Modbus words the value occupies."""
        return TYPES[self.type][0]

    @property
    def end(self) -> int:
        """First address after the register (address + word_count)."""
        return self.address + self.word_count

    def kwh(self, value: Decimal) -> Decimal:
        """An energy register's decoded value in kWh (its unit is one of KWH_PER_UNIT)."""
        return value * KWH_PER_UNIT[self.unit.lower()]


@dataclass(frozen=True)
class Vector:
    """A profile's test vector: register words in, expected value out (None = missing)."""

    register: str
    words: tuple[int, ...]  # Modbus: register words; Mercury: the reply's bytes
    expected: Decimal | None
    text: str = ""  # IEC 62056-21: the data line as the meter sends it


@dataclass(frozen=True)
class ReadBlock:
    """One read request: function code, start address, word count and the registers it covers."""

    function: int
    address: int
    count: int
    registers: tuple[Register, ...]

    @property
    def end(self) -> int:
        """First address after the block."""
        return self.address + self.count


@dataclass(frozen=True)
class Profile:
    """A validated firmware profile (register map of one meter model / firmware range)."""

    id: str
    manufacturer: str
    model: str
    source: str
    byte_order: str
    max_registers_per_request: int
    response_time_ms: int
    identification: dict[str, Register]
    registers: tuple[Register, ...]
    test_vectors: tuple[Vector, ...]
    path: Path | None = None
    firmware: str | None = None
    notes: str | None = None
    max_gap_words: int = DEFAULT_MAX_GAP_WORDS
    billed_quantities: tuple[str, ...] = DEFAULT_BILLED
    protocol: str = "modbus"  # one of PROTOCOLS: which driver reads the meter

    def energy_registers(self) -> tuple[Register, ...]:
        """The registers carrying energy counters (quantity energy_*), in file order."""
        return tuple(r for r in self.registers if r.quantity in ENERGY_QUANTITIES)

    def billed_registers(self) -> dict[str, Register]:
        """Zone -> the register billed for it: the first of `billed_quantities` the profile maps
        for that zone (zones in the order those registers are met)."""
        billed: dict[str, Register] = {}
        for quantity in self.billed_quantities:
            for reg in self.energy_registers():
                if reg.quantity == quantity and reg.zone and reg.zone not in billed:
                    billed[reg.zone] = reg
        return billed

    def zones(self) -> tuple[str, ...]:
        """Tariff zones the profile's energy registers carry, in T, T1..T4 order."""
        present = {r.zone for r in self.energy_registers()}
        return tuple(z for z in ZONES if z in present)

    def register(self, name: str) -> Register:
        """The register or identification register called ``name`` (KeyError if absent)."""
        for reg in self.registers:
            if reg.name == name:
                return reg
        return self.identification[name]
