"""Reading firmware profiles from TOML: the strict schema (pydantic), checks across registers, and
the frozen `Profile` records of `model.py`."""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.meters.profiles.model import (
    DEFAULT_BILLED,
    DEFAULT_MAX_GAP_WORDS,
    ENERGY_QUANTITIES,
    ID_RE,
    IDENTIFICATION_QUANTITY,
    KWH_PER_UNIT,
    MISSING,
    MODBUS_MAX_READ_WORDS,
    NAME_RE,
    TYPES,
    ZONES,
    ByteOrder,
    Profile,
    ProfileError,
    Quantity,
    Register,
    RegisterType,
    Vector,
    Zone,
)
from gateway.resources import package_path

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
    name: str = Field(pattern=NAME_RE, max_length=64)
    quantity: Quantity
    zone: Zone | None = None


class _VectorModel(_Strict):
    register_name: str = Field(alias="register", min_length=1)
    words: list[_Word] = Field(min_length=1, max_length=4)
    value: int | float | str  # int first: a 64-bit counter must not pass through float


class _ProfileModel(_Strict):
    protocol: Literal["modbus"] = "modbus"  # other protocols: profiles/named.py
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
    billed_quantities: list[str] = Field(default_factory=lambda: list(DEFAULT_BILLED), min_length=1)
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


def _check_id_and_billed(path: Path, model: Any, problems: list[tuple[str, str]]) -> None:
    """The rules every profile keeps, whatever its protocol: its id and its billed quantities."""
    stem = path.stem
    if model.id is not None and model.id != stem:
        problems.append(("id", f"{model.id!r} must equal the file name stem {stem!r}"))
    if not ID_RE.match(stem):
        problems.append(("id", f"file name stem {stem!r} is not a valid profile id ([a-z0-9_], lower case)"))
    for i, quantity in enumerate(model.billed_quantities):
        key = f"billed_quantities[{i}]"
        if quantity not in ENERGY_QUANTITIES:
            problems.append(
                (key, f"only an energy counter is billed ({', '.join(ENERGY_QUANTITIES)}), not {quantity!r}")
            )
        elif quantity in model.billed_quantities[:i]:
            problems.append((key, f"{quantity!r} is listed twice"))


def _build(path: Path, model: _ProfileModel) -> Profile:
    problems: list[tuple[str, str]] = []
    stem = path.stem
    _check_id_and_billed(path, model, problems)

    names: dict[str, str] = {}
    identification: dict[str, Register] = {}
    located: list[tuple[str, Register]] = []
    for ident_name, ident in model.identification.items():
        key = f"identification.{ident_name}"
        if not re.match(NAME_RE, ident_name):
            problems.append((key, f"name {ident_name!r} must match {NAME_RE}"))
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
            if rm.unit.lower() not in KWH_PER_UNIT:
                problems.append(
                    (
                        f"{key}.unit",
                        f"an energy counter counts Wh, kWh or MWh (or leave it out: kWh), not {rm.unit!r}",
                    )
                )
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
        billed_quantities=tuple(model.billed_quantities),
    )


# The profiles shipped with the gateway: package data, `adapters/meters/firmware_profiles/` of the
# installation (gateway/resources.py); `[modbus] profiles_dir` replaces them.
DEFAULT_DIR = package_path("adapters.meters", "firmware_profiles")


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
    if isinstance(data, dict) and data.get("protocol", "modbus") != "modbus":
        from adapters.meters.profiles.named import build_named  # protocols that name their values

        return build_named(path, data)
    try:
        model = _ProfileModel.model_validate(data)
    except ValidationError as exc:
        raise _from_validation_error(path, exc) from None
    return _build(path, model)


def profile_files(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise ProfileError(directory, "(directory)", "not a directory")
    return sorted(p for p in directory.rglob("*.toml") if p.is_file())


def load_profiles(directory: str | Path) -> dict[str, Profile]:
    """Load every *.toml under ``directory`` (sub-folders included) keyed by id; first problem raises."""
    profiles: dict[str, Profile] = {}
    for file in profile_files(directory):
        profile = load_profile(file)
        if profile.id in profiles:
            raise ProfileError(
                file,
                "id",
                f"duplicate profile id {profile.id!r} (already defined by {profiles[profile.id].path})",
            )
        profiles[profile.id] = profile
    return profiles
