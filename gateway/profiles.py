"""Firmware profiles: Modbus register maps of meter models, kept as data (TOML), not code.

One TOML file per meter model (and per firmware range where the map differs) lives in
``firmware_profiles/`` (sub-folders are allowed, e.g. one per manufacturer).  The profile id
is the file stem: ``firmware_profiles/eastron_sdm120.toml`` -> ``eastron_sdm120``.  Adding a
model is a data change: write the file, run ``meter-gateway profiles check`` (which calls
:func:`check_profiles`), no code changes.

This module is pure Python (``struct`` + ``decimal``); the gateway core never imports a
channel library such as pymodbus.  The Modbus channel reads the words that :func:`plan_reads`
asks for and hands them back to :func:`split_block` / :func:`decode`.

Schema (``extra`` keys are rejected everywhere; ``?`` marks an optional key)::

    id = "eastron_sdm120"          # ? must equal the file stem when given
    manufacturer = "Eastron"
    model = "SDM120-Modbus"
    source = "..."                 # REQUIRED: title/version of the manufacturer document
    firmware = ">=1.0"             # ? firmware range the map applies to (free text)
    notes = "..."                  # ? free text shown by describe(): caveats, unverified items
    byte_order = "ABCD"            # default for every register: ABCD | CDAB | BADC | DCBA
    max_registers_per_request = 40 # 1..125 words per read request (FC3/FC4 limit is 125)
    max_gap_words = 8              # ? unused words that plan_reads may bridge (default 8; 0 for
                                   #   meters that reject reads spanning unmapped addresses)
    response_time_ms = 100         # worst-case reply time of the meter, for timeouts

    [identification]               # ? registers identifying the unit (name -> register)
    serial = { function = 3, address = 0xFC00, type = "uint32" }
                                   # keys: function, address, type, byte_order?, scale?,
                                   #       unit?, nan_values?

    [[registers]]                  # at least one
    name = "import_total"          # [a-z][a-z0-9_]*, unique in the profile
    quantity = "energy_import"     # see QUANTITIES
    zone = "T"                     # energy quantities only, required there: T T1 T2 T3 T4
    function = 4                   # 3 (holding) or 4 (input)
    address = 0x0048               # protocol (0-based) address, as sent on the wire
    type = "float32"               # see TYPES
    scale = 1.0                    # ? value = raw * scale (default 1)
    unit = "kWh"                   # ? unit of the scaled value
    byte_order = "ABCD"            # ? per-register override
    nan_values = [0x7FFFFFFF]      # ? extra raw "no value" sentinels (see below)

    [[test_vectors]]               # at least one numeric vector and one "missing" vector
    register = "import_total"      # a register or identification name
    words = [0x4640, 0xE666]       # register words exactly as read from the wire
    value = 12345.6                # expected decoded value, or "missing"
                                   # (a decimal string such as "12345.6" is accepted too)

Byte/word orders (bytes of the value named A B C D ..., A most significant):

    ======  =================================  ============  ========================
    order   meaning                            32-bit words  64-bit words
    ======  =================================  ============  ========================
    ABCD    big-endian, high word first        AB CD         AB CD EF GH
    CDAB    word-swapped: low word first       CD AB         GH EF CD AB
    BADC    byte-swapped inside each word      BA DC         BA DC FE HG
    DCBA    little-endian                      DC BA         HG FE DC BA
    ======  =================================  ============  ========================

For 16-bit types ABCD == CDAB and BADC == DCBA.  (pymodbus' helpers only swap words, which
is why decoding lives here.)

"No value" sentinels -- :func:`decode` returns ``None`` for: NaN and +/-inf (float types);
all-ones (0xFFFF...) for unsigned integer types; a BCD nibble above 9; any raw value listed
in ``nan_values``.  ``nan_values`` are raw integers compared with the bit pattern of the
register (a negative number is taken as its two's complement, so ``-1`` and ``0xFFFF`` are
the same for a 16-bit register).

Exact values: results are :class:`~decimal.Decimal`.  Integers and BCD are exact
(``123456789 * 0.01`` -> ``1234567.89``; the scale is taken from its TOML text, so 0.01 is
exactly 0.01).  Floats are converted through the *shortest* decimal string that gives back
the same float -- for float32 the shortest string that round-trips through float32 -- so a
meter showing 12345.6 (float32 0x4640E666 = 12345.599609375) yields ``Decimal("12345.6")``,
not ``12345.599609375``; float64 uses ``Decimal(repr(value))``.
"""

from __future__ import annotations

import math
import re
import struct
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "BYTE_ORDERS",
    "DEFAULT_MAX_GAP_WORDS",
    "ENERGY_QUANTITIES",
    "QUANTITIES",
    "TYPES",
    "ZONES",
    "Profile",
    "ProfileError",
    "ReadBlock",
    "Register",
    "Vector",
    "check_profiles",
    "decode",
    "describe",
    "encode",
    "load_profile",
    "load_profiles",
    "plan_reads",
    "run_vectors",
    "split_block",
]

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

BYTE_ORDERS: tuple[str, ...] = get_args(ByteOrder)
ZONES: tuple[str, ...] = get_args(Zone)
QUANTITIES: tuple[str, ...] = get_args(Quantity)
ENERGY_QUANTITIES: tuple[str, ...] = tuple(q for q in QUANTITIES if q.startswith("energy_"))
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

_NAME_RE = r"^[a-z][a-z0-9_]*$"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_DECIMAL_CONTEXT = Context(prec=400)  # float64 reaches 1.8e308: keep every digit exact


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
    function: int
    address: int
    type: str
    scale: Decimal
    unit: str
    byte_order: str
    nan_values: tuple[int, ...] = ()

    @property
    def word_count(self) -> int:
        """Number of 16-bit Modbus words the value occupies."""
        return TYPES[self.type][0]

    @property
    def end(self) -> int:
        """First address after the register (address + word_count)."""
        return self.address + self.word_count


@dataclass(frozen=True)
class Vector:
    """A profile's test vector: register words in, expected value out (None = missing)."""

    register: str
    words: tuple[int, ...]
    expected: Decimal | None


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

    def energy_registers(self) -> tuple[Register, ...]:
        """The registers carrying energy counters (quantity energy_*), in file order."""
        return tuple(r for r in self.registers if r.quantity in ENERGY_QUANTITIES)

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


# --------------------------------------------------------------------------- schema (pydantic)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


_Word = Annotated[int, Field(ge=0, le=0xFFFF)]


class _IdentificationModel(_Strict):
    function: Literal[3, 4]
    address: int = Field(ge=0, le=0xFFFF)
    type: RegisterType
    byte_order: ByteOrder | None = None
    scale: float = Field(default=1.0, gt=0)
    unit: str = ""
    nan_values: list[int] = Field(default_factory=list)


class _RegisterModel(_IdentificationModel):
    name: str = Field(pattern=_NAME_RE, max_length=64)
    quantity: Quantity
    zone: Zone | None = None


class _VectorModel(_Strict):
    register_name: str = Field(alias="register", min_length=1)
    words: list[_Word] = Field(min_length=1, max_length=4)
    value: int | float | str  # int first: a 64-bit counter must not pass through float


class _ProfileModel(_Strict):
    id: str | None = None
    manufacturer: str = Field(min_length=1)
    model: str = Field(min_length=1)
    source: str = Field(min_length=1)
    firmware: str | None = None
    notes: str | None = None
    byte_order: ByteOrder
    max_registers_per_request: int = Field(ge=1, le=MODBUS_MAX_READ_WORDS)
    max_gap_words: int = Field(default=DEFAULT_MAX_GAP_WORDS, ge=0, le=MODBUS_MAX_READ_WORDS)
    response_time_ms: int = Field(ge=1, le=60_000)
    identification: dict[str, _IdentificationModel] = Field(default_factory=dict)
    registers: list[_RegisterModel] = Field(min_length=1)
    test_vectors: list[_VectorModel] = Field(min_length=1)


def _key_path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _reason(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key (not part of the profile schema)"
    if kind == "missing":
        return "required key is missing"
    msg = str(err.get("msg", "invalid value"))
    value = err.get("input")
    if not isinstance(value, dict | list):
        msg += f" (got {value!r})"
    return msg


def _from_validation_error(path: Path, exc: ValidationError) -> ProfileError:
    problems: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = list(err["loc"])
        # union members show up as an extra loc element ("float", "str"); drop them
        if len(loc) >= 2 and loc[-2] == "value" and loc[-1] in ("int", "float", "str"):
            loc = loc[:-1]
        item = (_key_path(loc), _reason(err))
        if item not in problems:
            problems.append(item)
    first, *rest = problems
    return ProfileError(path, first[0], first[1], more=rest)


# --------------------------------------------------------------------------- loading


def _scale(value: float) -> Decimal:
    # str() of the TOML float is the text the author wrote (shortest repr), so 0.01 -> 0.01
    return Decimal(str(value))


def _normalise_nan_values(
    values: Sequence[int], type_name: str, key: str, problems: list[tuple[str, str]]
) -> tuple[int, ...]:
    bits = TYPES[type_name][0] * 16
    out: list[int] = []
    for i, v in enumerate(values):
        if not -(1 << (bits - 1)) <= v < (1 << bits):
            problems.append((f"{key}.nan_values[{i}]", f"{v:#x} does not fit a {bits}-bit register"))
            continue
        out.append(v & ((1 << bits) - 1))
    return tuple(out)


def _make_register(
    model: _IdentificationModel,
    *,
    name: str,
    quantity: str,
    zone: str | None,
    default_order: str,
    key: str,
    problems: list[tuple[str, str]],
) -> Register:
    words = TYPES[model.type][0]
    if model.address + words > 0x10000:
        problems.append((f"{key}.address", f"{model.address:#06x} + {words} words runs past 0xFFFF"))
    return Register(
        name=name,
        quantity=quantity,
        zone=zone,
        function=model.function,
        address=model.address,
        type=model.type,
        scale=_scale(model.scale),
        unit=model.unit,
        byte_order=model.byte_order or default_order,
        nan_values=_normalise_nan_values(model.nan_values, model.type, key, problems),
    )


def _expected_value(raw: int | float | str, key: str, problems: list[tuple[str, str]]) -> Decimal | None:
    if isinstance(raw, str):
        if raw == MISSING:
            return None
        try:
            value = Decimal(raw)
        except InvalidOperation:
            problems.append((key, f'expected a number or "{MISSING}", got {raw!r}'))
            return None
        if not value.is_finite():
            problems.append((key, f"expected a finite number, got {raw!r}"))
        return value
    if isinstance(raw, float) and not math.isfinite(raw):
        problems.append((key, f'expected a finite number or "{MISSING}", got {raw!r}'))
        return None
    return Decimal(str(raw))


def _check_overlaps(regs: Sequence[tuple[str, Register]], problems: list[tuple[str, str]]) -> None:
    by_function: dict[int, list[tuple[str, Register]]] = {}
    for key, reg in regs:
        by_function.setdefault(reg.function, []).append((key, reg))
    for items in by_function.values():
        items.sort(key=lambda item: (item[1].address, item[0]))
        for (key_a, a), (key_b, b) in zip(items, items[1:], strict=False):
            if b.address < a.end:
                problems.append(
                    (
                        f"{key_b}.address",
                        f"'{b.name}' ({b.address:#06x}..{b.end - 1:#06x}) overlaps '{a.name}' "
                        f"({key_a}, {a.address:#06x}..{a.end - 1:#06x}) for function {a.function}",
                    )
                )


def _build(path: Path, model: _ProfileModel) -> Profile:
    problems: list[tuple[str, str]] = []
    stem = path.stem
    if model.id is not None and model.id != stem:
        problems.append(("id", f"{model.id!r} must equal the file name stem {stem!r}"))
    if not _ID_RE.match(stem):
        problems.append(("id", f"file name stem {stem!r} is not a valid profile id ([a-z0-9_], lower case)"))

    names: dict[str, str] = {}
    identification: dict[str, Register] = {}
    located: list[tuple[str, Register]] = []
    for ident_name, ident in model.identification.items():
        key = f"identification.{ident_name}"
        if not re.match(_NAME_RE, ident_name):
            problems.append((key, f"name {ident_name!r} must match {_NAME_RE}"))
        reg = _make_register(
            ident,
            name=ident_name,
            quantity=IDENTIFICATION_QUANTITY,
            zone=None,
            default_order=model.byte_order,
            key=key,
            problems=problems,
        )
        identification[ident_name] = reg
        names[ident_name] = key
        located.append((key, reg))

    registers: list[Register] = []
    seen_series: dict[tuple[str, str | None], str] = {}
    for i, rm in enumerate(model.registers):
        key = f"registers[{i}]"
        if rm.name in names:
            problems.append((f"{key}.name", f"duplicate name {rm.name!r} (also {names[rm.name]})"))
        names.setdefault(rm.name, key)
        if rm.quantity in ENERGY_QUANTITIES:
            if rm.zone is None:
                problems.append((f"{key}.zone", f"energy register needs a zone ({', '.join(ZONES)})"))
            else:
                series = (rm.quantity, rm.zone)
                if series in seen_series:
                    problems.append(
                        (
                            f"{key}.zone",
                            f"{rm.quantity} zone {rm.zone} is already carried by {seen_series[series]}",
                        )
                    )
                seen_series.setdefault(series, key)
        elif rm.zone is not None:
            problems.append((f"{key}.zone", f"only energy registers carry a zone, {rm.quantity!r} does not"))
        reg = _make_register(
            rm,
            name=rm.name,
            quantity=rm.quantity,
            zone=rm.zone,
            default_order=model.byte_order,
            key=key,
            problems=problems,
        )
        if reg.word_count > model.max_registers_per_request:
            problems.append(
                (
                    f"{key}.type",
                    f"{reg.type} needs {reg.word_count} words, more than max_registers_per_request="
                    f"{model.max_registers_per_request}",
                )
            )
        registers.append(reg)
        located.append((key, reg))
    _check_overlaps(located, problems)

    vectors: list[Vector] = []
    all_regs = {r.name: r for r in registers} | identification
    have_missing = have_number = False
    for i, vm in enumerate(model.test_vectors):
        key = f"test_vectors[{i}]"
        target = all_regs.get(vm.register_name)
        if target is None:
            problems.append(
                (f"{key}.register", f"no register or identification entry named {vm.register_name!r}")
            )
        elif len(vm.words) != target.word_count:
            problems.append(
                (
                    f"{key}.words",
                    f"{target.type} register {vm.register_name!r} needs {target.word_count} words, got {len(vm.words)}",
                )
            )
        expected = _expected_value(vm.value, f"{key}.value", problems)
        if vm.value == MISSING:
            have_missing = True
        else:
            have_number = True
        vectors.append(Vector(register=vm.register_name, words=tuple(vm.words), expected=expected))
    if not have_number:
        problems.append(("test_vectors", "needs at least one vector with a numeric value"))
    if not have_missing:
        problems.append(
            (
                "test_vectors",
                f'needs at least one vector with value = "{MISSING}" (the meter\'s no-value sentinel)',
            )
        )

    if problems:
        (key0, reason0), *rest = problems
        raise ProfileError(path, key0, reason0, more=rest)
    return Profile(
        id=stem,
        manufacturer=model.manufacturer,
        model=model.model,
        source=model.source,
        byte_order=model.byte_order,
        max_registers_per_request=model.max_registers_per_request,
        response_time_ms=model.response_time_ms,
        identification=identification,
        registers=tuple(registers),
        test_vectors=tuple(vectors),
        path=path,
        firmware=model.firmware,
        notes=model.notes,
        max_gap_words=model.max_gap_words,
    )


def load_profile(path: str | Path) -> Profile:
    """Load and validate one profile file; raises ProfileError naming file, key and reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(path, "(file)", f"cannot read: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(path, "(toml)", f"not valid TOML: {exc}") from exc
    try:
        model = _ProfileModel.model_validate(data)
    except ValidationError as exc:
        raise _from_validation_error(path, exc) from None
    return _build(path, model)


def _profile_files(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise ProfileError(directory, "(directory)", "not a directory")
    return sorted(p for p in directory.rglob("*.toml") if p.is_file())


def load_profiles(directory: str | Path) -> dict[str, Profile]:
    """Load every *.toml under ``directory`` (sub-folders included) keyed by id; first problem raises."""
    profiles: dict[str, Profile] = {}
    for file in _profile_files(directory):
        profile = load_profile(file)
        if profile.id in profiles:
            raise ProfileError(
                file,
                "id",
                f"duplicate profile id {profile.id!r} (already defined by {profiles[profile.id].path})",
            )
        profiles[profile.id] = profile
    return profiles


# --------------------------------------------------------------------------- decoding


def _to_big_endian(words: Sequence[int], order: str) -> bytes:
    seq = list(reversed(words)) if order in ("CDAB", "DCBA") else list(words)
    swap = order in ("BADC", "DCBA")
    out = bytearray()
    for w in seq:
        hi, lo = (w >> 8) & 0xFF, w & 0xFF
        out += bytes((lo, hi)) if swap else bytes((hi, lo))
    return bytes(out)


def _from_big_endian(data: bytes, order: str) -> list[int]:
    swap = order in ("BADC", "DCBA")
    words = [
        (data[i + 1] << 8 | data[i]) if swap else (data[i] << 8 | data[i + 1]) for i in range(0, len(data), 2)
    ]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    return words


def _float32_text(value: float) -> str:
    """Shortest decimal text that converts back to the same float32."""
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        try:
            if struct.unpack(">f", struct.pack(">f", float(text)))[0] == value:
                return text
        except OverflowError:  # rounding near the float32 maximum went past it
            continue
    return repr(value)  # pragma: no cover - 9 significant digits always round-trip


def _apply_scale(value: Decimal, scale: Decimal) -> Decimal:
    with localcontext(_DECIMAL_CONTEXT):
        result = value if scale == 1 else value * scale
        exponent = result.as_tuple().exponent
        if isinstance(exponent, int) and exponent > 0:
            result = result.quantize(Decimal(1))
    return result


def _check_words(register: Register, words: Sequence[int]) -> None:
    if len(words) != register.word_count:
        raise ValueError(
            f"{register.name}: {register.type} needs {register.word_count} words, got {len(words)}"
        )
    for w in words:
        if not isinstance(w, int) or not 0 <= w <= 0xFFFF:
            raise ValueError(f"{register.name}: {w!r} is not a 16-bit register word")


def decode(register: Register, words: Sequence[int]) -> Decimal | None:
    """Decode a register's words to its scaled value; None for the meter's "no value" sentinels."""
    _check_words(register, words)
    words_n, kind = TYPES[register.type]
    data = _to_big_endian(words, register.byte_order)
    raw = int.from_bytes(data, "big")
    bits = words_n * 16
    if raw in register.nan_values:
        return None
    if kind == "u":
        if raw == (1 << bits) - 1:
            return None
        value = Decimal(raw)
    elif kind == "i":
        value = Decimal(raw - (1 << bits) if raw >> (bits - 1) else raw)
    elif kind == "f":
        if bits == 32:
            f = struct.unpack(">f", data)[0]
            if not math.isfinite(f):
                return None
            value = Decimal(_float32_text(f))
        else:
            f = struct.unpack(">d", data)[0]
            if not math.isfinite(f):
                return None
            value = Decimal(repr(f))
    else:  # bcd
        digits = [(raw >> shift) & 0xF for shift in range(bits - 4, -1, -4)]
        if any(d > 9 for d in digits):
            return None
        value = Decimal(int("".join(str(d) for d in digits)))
    result = _apply_scale(value, register.scale)
    if kind == "f":
        # a float carries no resolution: drop the zeros the scale multiplication adds
        result = _apply_scale(result.normalize(_DECIMAL_CONTEXT), Decimal(1))
    return result


def encode(register: Register, value: float | int | Decimal | None) -> list[int]:
    """Encode a value into register words (inverse of decode, for simulators and tests).

    ``value`` is the scaled value; integer types round ``value / scale`` to the nearest
    integer (half-even).  ``None`` (or NaN for float types) encodes the "no value" sentinel:
    NaN for floats, all-ones for unsigned/BCD types, the first ``nan_values`` entry otherwise.
    Raises ValueError when the value does not fit the register type.
    """
    words_n, kind = TYPES[register.type]
    bits = words_n * 16
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if kind == "f":
            data = struct.pack(">f", math.nan) if bits == 32 else struct.pack(">d", math.nan)
        elif register.nan_values:
            data = register.nan_values[0].to_bytes(bits // 8, "big")
        elif kind in ("u", "bcd"):
            data = ((1 << bits) - 1).to_bytes(bits // 8, "big")
        else:
            raise ValueError(f"{register.name}: {register.type} has no 'no value' sentinel (add nan_values)")
        return _from_big_endian(data, register.byte_order)

    if kind == "f":
        number = float(value) if register.scale == 1 else float(Decimal(str(value)) / register.scale)
        try:
            data = struct.pack(">f", number) if bits == 32 else struct.pack(">d", number)
        except OverflowError as exc:
            raise ValueError(f"{register.name}: {value!r} does not fit {register.type}") from exc
        return _from_big_endian(data, register.byte_order)

    with localcontext(_DECIMAL_CONTEXT):
        scaled = Decimal(str(value)) if not isinstance(value, Decimal) else value
        if not scaled.is_finite():
            raise ValueError(f"{register.name}: {value!r} cannot be encoded as {register.type}")
        raw_dec = (scaled / register.scale).to_integral_value(rounding=ROUND_HALF_EVEN)
    raw = int(raw_dec)
    if kind == "u":
        if not 0 <= raw < (1 << bits):
            raise ValueError(f"{register.name}: {value!r} does not fit {register.type}")
        bits_value = raw
    elif kind == "i":
        if not -(1 << (bits - 1)) <= raw < (1 << (bits - 1)):
            raise ValueError(f"{register.name}: {value!r} does not fit {register.type}")
        bits_value = raw & ((1 << bits) - 1)
    else:  # bcd
        if not 0 <= raw < 10 ** (bits // 4):
            raise ValueError(f"{register.name}: {value!r} does not fit {register.type}")
        bits_value = int(str(raw), 16)
    return _from_big_endian(bits_value.to_bytes(bits // 8, "big"), register.byte_order)


# --------------------------------------------------------------------------- read planning


def plan_reads(
    profile: Profile,
    registers: Sequence[Register] | None = None,
    *,
    max_gap: int | None = None,
) -> list[ReadBlock]:
    """Merge registers into as few read requests as fit the profile's limits, sorted by address.

    Registers with the same function code are read together when the unused words between
    them do not exceed ``max_gap`` (default: the profile's ``max_gap_words``) and the request
    stays within ``max_registers_per_request`` words.
    """
    regs = list(profile.registers if registers is None else registers)
    gap = profile.max_gap_words if max_gap is None else max_gap
    limit = profile.max_registers_per_request
    unique: dict[tuple[str, int, int], Register] = {}
    for reg in regs:
        if reg.word_count > limit:
            raise ValueError(f"{reg.name}: {reg.word_count} words exceed max_registers_per_request={limit}")
        unique.setdefault((reg.name, reg.function, reg.address), reg)
    blocks: list[ReadBlock] = []
    by_function: dict[int, list[Register]] = {}
    for reg in unique.values():
        by_function.setdefault(reg.function, []).append(reg)
    for function, items in by_function.items():
        items.sort(key=lambda r: (r.address, r.end))
        start = items[0].address
        end = items[0].end
        members = [items[0]]
        for reg in items[1:]:
            new_end = max(end, reg.end)
            if reg.address - end <= gap and new_end - start <= limit:
                end = new_end
                members.append(reg)
                continue
            blocks.append(ReadBlock(function, start, end - start, tuple(members)))
            start, end, members = reg.address, reg.end, [reg]
        blocks.append(ReadBlock(function, start, end - start, tuple(members)))
    blocks.sort(key=lambda b: (b.address, b.function))
    return blocks


def split_block(block: ReadBlock, words: Sequence[int]) -> dict[str, Decimal | None]:
    """Decode every register of a block from the block's reply words (name -> value)."""
    if len(words) != block.count:
        raise ValueError(
            f"block {block.function}:{block.address:#06x} expects {block.count} words, got {len(words)}"
        )
    out: dict[str, Decimal | None] = {}
    for reg in block.registers:
        offset = reg.address - block.address
        out[reg.name] = decode(reg, words[offset : offset + reg.word_count])
    return out


# --------------------------------------------------------------------------- checking / describing


def _fmt_words(words: Sequence[int]) -> str:
    return "[" + ", ".join(f"0x{w:04X}" for w in words) + "]"


def run_vectors(profile: Profile) -> list[str]:
    """Run a profile's test vectors; returns one human-readable error per failing vector."""
    where = profile.path if profile.path is not None else profile.id
    errors: list[str] = []
    for i, vec in enumerate(profile.test_vectors):
        key = f"test_vectors[{i}]"
        try:
            reg = profile.register(vec.register)
            got = decode(reg, vec.words)
        except (KeyError, ValueError) as exc:
            errors.append(f"{where}: {key}: {exc}")
            continue
        want = "missing" if vec.expected is None else str(vec.expected)
        if (got is None) != (vec.expected is None) or (got is not None and got != vec.expected):
            shown = "missing" if got is None else str(got)
            errors.append(
                f"{where}: {key}: register {vec.register!r} words {_fmt_words(vec.words)} "
                f"decode to {shown}, expected {want}"
            )
    return errors


def check_profiles(directory: str | Path) -> tuple[list[Profile], list[str]]:
    """Load every profile and run its test vectors: (profiles that pass, error strings)."""
    errors: list[str] = []
    good: list[Profile] = []
    seen: dict[str, Path | None] = {}
    try:
        files = _profile_files(directory)
    except ProfileError as exc:
        return [], [str(exc)]
    if not files:
        errors.append(f"{directory}: (directory): no *.toml profiles found")
    for file in files:
        try:
            profile = load_profile(file)
        except ProfileError as exc:
            errors.extend(str(exc).splitlines())
            continue
        if profile.id in seen:
            errors.append(
                f"{file}: id: duplicate profile id {profile.id!r} (already defined by {seen[profile.id]})"
            )
            continue
        seen[profile.id] = profile.path
        failures = run_vectors(profile)
        if failures:
            errors.extend(failures)
            continue
        good.append(profile)
    return good, errors


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _register_row(reg: Register) -> list[str]:
    sentinels = ", ".join(f"0x{v:X}" for v in reg.nan_values)
    return [
        reg.name,
        reg.quantity,
        reg.zone or "",
        str(reg.function),
        f"0x{reg.address:04X} ({reg.address})",
        str(reg.word_count),
        reg.type,
        reg.byte_order,
        format(reg.scale, "f"),
        reg.unit,
        sentinels,
    ]


def describe(profile: Profile) -> str:
    """Human-readable register map table of a profile (for `meter-gateway profiles check`)."""
    lines = [
        f"{profile.id}: {profile.manufacturer} {profile.model}",
        f"  source:         {profile.source}",
    ]
    if profile.firmware:
        lines.append(f"  firmware:       {profile.firmware}")
    lines += [
        f"  byte order:     {profile.byte_order}",
        f"  max words/read: {profile.max_registers_per_request} (gap bridged: {profile.max_gap_words} words)",
        f"  response time:  {profile.response_time_ms} ms",
        f"  zones:          {', '.join(profile.zones()) or '-'}",
    ]
    if profile.notes:
        lines.append(f"  notes:          {' '.join(profile.notes.split())}")
    header = [
        "name",
        "quantity",
        "zone",
        "fc",
        "address",
        "words",
        "type",
        "order",
        "scale",
        "unit",
        "extra no-value",
    ]
    rows = [header] + [_register_row(r) for r in profile.registers]
    rows += [_register_row(r) for r in profile.identification.values()]
    lines.append("")
    lines += ["  " + line for line in _table(rows)]
    plan = plan_reads(profile)
    lines.append("")
    lines.append(f"  read plan: {len(plan)} request(s)")
    for block in plan:
        names = ", ".join(r.name for r in block.registers)
        lines.append(f"    fc{block.function} 0x{block.address:04X} x{block.count}: {names}")
    return "\n".join(lines)
