"""Profiles of meters whose protocol names its values instead of numbering registers: IEC 62056-21
(a data set's address such as "1.8.1" or Energomera's "ET0PE", and the value's position in it)
and Mercury (a request such as "energy_from_reset" and the tariff it is asked for; the single-phase
200 family's "energy_by_tariffs").

Such a profile says `protocol = "iec62056-21"`, `"mercury"` or `"mercury200"` at its top; its schema is the Modbus
one's without the word-level keys (function, address, type, byte order, request size):

    protocol = "iec62056-21"
    manufacturer = "Energomera"
    model = "CE301"
    source = "..."                  # REQUIRED: the manufacturer's protocol description
    response_time_ms = 1500         # ? the meter's longest reaction time (IEC 62056-21: 1500 ms)
    billed_quantities = [...]       # ? as for Modbus

    [identification]
    serial = { code = "C.1.0" }     # ? code, index (1 = first value); Mercury: "serial_number"

    [[registers]]
    name = "import_t1"
    quantity = "energy_import"
    zone = "T1"
    code = "1.8.1"                  # IEC: the data set's address; Mercury: "energy_from_reset" (A+ for
                                    # energy_import, A- for energy_export)
    index = 1                       # IEC: the value's position (1 = first); Mercury: the tariff (0 = total)
    unit = "kWh"                    # ? as for Modbus; an IEC data set's own unit wins when it has one
    scale = 1.0                     # ? value = raw * scale

    [[test_vectors]]
    register = "import_t1"
    line = "1.8.1(001234.567*kWh)"  # IEC: the data line as the meter sends it
    # bytes = [0x01, 0x00, 0x40, 0xE2]  # Mercury: the value's four bytes as on the wire (123456 Wh)
    value = 1234.567                # or "missing"
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.meters.profiles.model import (
    DEFAULT_BILLED,
    ENERGY_QUANTITIES,
    IDENTIFICATION_QUANTITY,
    KWH_PER_UNIT,
    MISSING,
    NAME_RE,
    ZONES,
    Profile,
    ProfileError,
    Quantity,
    Register,
    Vector,
    Zone,
)
from adapters.meters.protocols import dlms_apdu, iec62056_21


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


_Byte = Annotated[int, Field(ge=0, le=0xFF)]


class _NamedIdentification(_Strict):
    code: str = Field(min_length=1, max_length=32)
    index: int = Field(default=1, ge=0, le=64)


class _NamedRegister(_Strict):
    name: str = Field(pattern=NAME_RE, max_length=64)
    quantity: Quantity
    zone: Zone | None = None
    code: str = Field(min_length=1, max_length=32)
    index: int = Field(default=1, ge=0, le=64)
    unit: str = ""
    scale: float = Field(default=1.0, gt=0)


class _NamedVector(_Strict):
    register_name: str = Field(alias="register", min_length=1)
    line: str | None = Field(default=None, min_length=1, max_length=256)
    bytes_: list[_Byte] | None = Field(default=None, alias="bytes", min_length=1, max_length=16)
    value: int | float | str


class _NamedProfile(_Strict):
    protocol: Literal["iec62056-21", "dlms", "mercury", "mercury200"]
    id: str | None = None
    manufacturer: str = Field(min_length=1)
    model: str = Field(min_length=1)
    source: str = Field(min_length=1)
    firmware: str | None = None
    notes: str | None = None
    response_time_ms: int = Field(default=1500, ge=1, le=60_000)
    billed_quantities: list[str] = Field(default_factory=lambda: list(DEFAULT_BILLED), min_length=1)
    identification: dict[str, _NamedIdentification] = Field(default_factory=dict)
    registers: list[_NamedRegister] = Field(min_length=1)
    test_vectors: list[_NamedVector] = Field(min_length=1)


# protocol -> the request codes its registers may name (None: any data set address)
CODES: dict[str, tuple[str, ...] | None] = {
    "iec62056-21": None,
    "dlms": None,  # any logical name A.B.C.D.E.F (checked below)
    "mercury": ("energy_from_reset",),  # request 05h, array 0; `index` is the tariff (0: the sum)
    # command 27h; `index` is the tariff 1..4, 0 the sum the gateway adds (the answer has none)
    "mercury200": ("energy_by_tariffs",),
}
MERCURY_IDENTIFICATION = "serial_number"  # request 08h, parameter 00h (the 200 family: command 2Fh)
MERCURY_QUANTITIES = ("energy_import", "energy_export")  # A+ and A- of an energy answer


def build_named(path: Path, data: dict[str, Any]) -> Profile:
    """A profile of a protocol with named values, from its parsed TOML; ProfileError names the key."""
    from adapters.meters.profiles.loading import _check_id_and_billed, _expected_value, _from_validation_error

    try:
        model = _NamedProfile.model_validate(data)
    except ValidationError as exc:
        raise _from_validation_error(path, exc) from None
    problems: list[tuple[str, str]] = []
    _check_id_and_billed(path, model, problems)
    codes = CODES[model.protocol]
    identification: dict[str, Register] = {}
    for name, ident in model.identification.items():
        if model.protocol in ("mercury", "mercury200") and ident.code != MERCURY_IDENTIFICATION:
            problems.append(
                (f"identification.{name}.code", f"mercury reads {MERCURY_IDENTIFICATION}, not {ident.code!r}")
            )
        if model.protocol == "dlms" and not _is_obis(ident.code):
            problems.append(
                (f"identification.{name}.code", f"a logical name A.B.C.D.E.F, not {ident.code!r}")
            )
        identification[name] = Register(
            name=name, quantity=IDENTIFICATION_QUANTITY, zone=None, code=ident.code, index=ident.index
        )
    registers: list[Register] = []
    names = set(identification)
    series: set[tuple[str, str | None]] = set()
    for i, rm in enumerate(model.registers):
        key = f"registers[{i}]"
        if rm.name in names:
            problems.append((f"{key}.name", f"duplicate name {rm.name!r}"))
        names.add(rm.name)
        if codes is not None and rm.code not in codes:
            problems.append((f"{key}.code", f"{model.protocol} reads {', '.join(codes)}, not {rm.code!r}"))
        if model.protocol == "dlms" and not _is_obis(rm.code):
            problems.append(
                (f"{key}.code", f"a DLMS register is a logical name A.B.C.D.E.F, not {rm.code!r}")
            )
        if model.protocol == "iec62056-21" and rm.index < 1:
            problems.append((f"{key}.index", "the first value of a data set is index 1"))
        if model.protocol == "mercury" and rm.index > 4:
            problems.append((f"{key}.index", "a Mercury tariff is 0 (the sum) or 1..4"))
        if model.protocol == "mercury200" and rm.index > 4:
            problems.append((f"{key}.index", "a Mercury 200 tariff is 1..4 (0: their sum)"))
        if model.protocol == "mercury200" and rm.quantity != "energy_import":
            problems.append((f"{key}.quantity", f"mercury200 reads energy_import, not {rm.quantity!r}"))
        if model.protocol == "mercury" and rm.quantity not in MERCURY_QUANTITIES:
            problems.append(
                (f"{key}.quantity", f"mercury reads {', '.join(MERCURY_QUANTITIES)}, not {rm.quantity!r}")
            )
        if rm.quantity in ENERGY_QUANTITIES:
            if rm.zone is None:
                problems.append((f"{key}.zone", f"energy register needs a zone ({', '.join(ZONES)})"))
            elif (rm.quantity, rm.zone) in series:
                problems.append((f"{key}.zone", f"{rm.quantity} zone {rm.zone} is mapped twice"))
            series.add((rm.quantity, rm.zone))
            if rm.unit.lower() not in KWH_PER_UNIT:
                problems.append((f"{key}.unit", f"an energy counter counts Wh, kWh or MWh, not {rm.unit!r}"))
        elif rm.zone is not None:
            problems.append((f"{key}.zone", f"only energy registers carry a zone, {rm.quantity!r} does not"))
        registers.append(
            Register(
                name=rm.name,
                quantity=rm.quantity,
                zone=rm.zone,
                code=rm.code,
                index=rm.index,
                unit=rm.unit,
                scale=Decimal(str(rm.scale)),
            )
        )
    vectors: list[Vector] = []
    have_number = have_missing = False
    wire_key = "line" if model.protocol == "iec62056-21" else "bytes"
    for i, vm in enumerate(model.test_vectors):
        key = f"test_vectors[{i}]"
        if vm.register_name not in names:
            problems.append(
                (f"{key}.register", f"no register or identification entry named {vm.register_name!r}")
            )
        wire = vm.line if model.protocol == "iec62056-21" else vm.bytes_
        other = vm.bytes_ if model.protocol == "iec62056-21" else vm.line
        if wire is None or other is not None:
            problems.append((key, f"a {model.protocol} vector gives `{wire_key}` (and nothing else)"))
        expected = _expected_value(vm.value, f"{key}.value", problems)
        have_missing = have_missing or vm.value == MISSING
        have_number = have_number or vm.value != MISSING
        vectors.append(Vector(vm.register_name, tuple(vm.bytes_ or ()), expected, text=vm.line or ""))
    if not have_number:
        problems.append(("test_vectors", "needs at least one vector with a numeric value"))
    # the Mercury 200's answer always carries all four tariffs: its protocol has no "no value"
    if not have_missing and model.protocol != "mercury200":
        problems.append(("test_vectors", f'needs at least one vector with value = "{MISSING}"'))
    if problems:
        (key0, reason0), *rest = problems
        raise ProfileError(path, key0, reason0, more=rest)
    return Profile(
        id=path.stem,
        manufacturer=model.manufacturer,
        model=model.model,
        source=model.source,
        byte_order="ABCD",
        max_registers_per_request=1,
        response_time_ms=model.response_time_ms,
        identification=identification,
        registers=tuple(registers),
        test_vectors=tuple(vectors),
        path=path,
        firmware=model.firmware,
        notes=model.notes,
        billed_quantities=tuple(model.billed_quantities),
        protocol=model.protocol,
    )


def _is_obis(code: str) -> bool:
    try:
        dlms_apdu.obis(code)
    except ValueError:
        return False
    return True


def decode_vector(profile: Profile, register: Register, vector: Vector) -> Decimal | None:
    """What the driver makes of a test vector's wire text or bytes (ValueError when it cannot)."""
    if profile.protocol == "dlms":
        from adapters.meters.profiles.dlms_values import vector_value

        return vector_value(register, bytes(vector.words))
    if profile.protocol == "mercury":
        return mercury_value(register, bytes(vector.words))
    if profile.protocol == "mercury200":
        return mercury200_value(register, bytes(vector.words))
    return iec_value(register, iec62056_21.parse_data_block(vector.text))


def iec_value(register: Register, data_sets: dict[str, list[tuple[str, str]]]) -> Decimal | None:
    """A register's value from a readout's data sets, in the register's unit; None: absent or empty.

    A data set that carries its own energy unit is converted to the register's unit; a unit that
    is not an energy unit where the profile expects one raises ValueError (never booked)."""
    values = data_sets.get(register.code, [])
    if len(values) < register.index:
        return None
    text, unit = values[register.index - 1]
    value = iec62056_21.number(text)
    if value is None:
        return None
    if register.scale != 1:
        value *= register.scale
    if unit and register.quantity in ENERGY_QUANTITIES:
        per_unit = KWH_PER_UNIT.get(unit.lower())
        if per_unit is None:
            raise ValueError(f"{register.code}: unit {unit!r} is not an energy unit")
        value = value * per_unit / KWH_PER_UNIT[register.unit.lower()]
    return value


def iec_text(register: Register, data_sets: dict[str, list[tuple[str, str]]]) -> str | None:
    """An identification value (a serial number may hold letters) as text; None when absent or empty."""
    values = data_sets.get(register.code, [])
    if len(values) < max(register.index, 1):
        return None
    return values[max(register.index, 1) - 1][0] or None


def mercury_value(register: Register, data: bytes) -> Decimal | None:
    """A Mercury value from its bytes as on the wire: an energy value's four bytes (in the
    register's unit, Wh), or a serial number's four (adapters/meters/protocols/mercury.py)."""
    from adapters.meters.protocols import mercury

    if register.quantity == IDENTIFICATION_QUANTITY:
        return Decimal(mercury.serial_text(data))
    wh = mercury.energy_value(data)
    return None if wh is None else Decimal(wh) * register.scale


def mercury200_value(register: Register, data: bytes) -> Decimal:
    """A Mercury 200 value from its bytes as on the wire: a tariff's four BCD bytes (hundredths of
    a kWh, times the register's scale), or the serial number's four (protocols/mercury200.py)."""
    from adapters.meters.protocols import mercury200

    if register.quantity == IDENTIFICATION_QUANTITY:
        return Decimal(mercury200.serial_text(data))
    return Decimal(mercury200.bcd(data)) * register.scale
