"""`meter-gateway profiles check`: run each profile's test vectors and describe its register map."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from adapters.meters.profiles.codec import decode
from adapters.meters.profiles.loading import load_profile, profile_files
from adapters.meters.profiles.model import Profile, ProfileError, Register
from adapters.meters.profiles.named import decode_vector
from adapters.meters.profiles.planning import plan_reads

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
            got = decode(reg, vec.words) if profile.protocol == "modbus" else decode_vector(profile, reg, vec)
        except (KeyError, ValueError) as exc:
            errors.append(f"{where}: {key}: {exc}")
            continue
        want = "missing" if vec.expected is None else str(vec.expected)
        if (got is None) != (vec.expected is None) or (got is not None and got != vec.expected):
            shown = "missing" if got is None else str(got)
            wire = (
                f"words {_fmt_words(vec.words)}"
                if profile.protocol == "modbus"
                else repr(vec.text)
                if vec.text
                else f"bytes {bytes(vec.words).hex(' ')}"
            )
            errors.append(
                f"{where}: {key}: register {vec.register!r} {wire} decode to {shown}, expected {want}"
            )
    return errors


def check_profiles(directory: str | Path) -> tuple[list[Profile], list[str]]:
    """Load every profile and run its test vectors: (profiles that pass, error strings)."""
    errors: list[str] = []
    good: list[Profile] = []
    seen: dict[str, Path | None] = {}
    try:
        files = profile_files(directory)
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


def _billed(profile: Profile) -> str:
    """Which register each zone's reading is taken from, and in what unit (kWh after conversion)."""
    billed = profile.billed_registers()
    zones = ", ".join(f"{zone} {reg.name} ({reg.unit or 'kWh'})" for zone, reg in billed.items())
    return f"{zones or '-'}; first of {', '.join(profile.billed_quantities)}"


def describe(profile: Profile) -> str:
    """Human-readable register map table of a profile (for `meter-gateway profiles check`)."""
    if profile.protocol != "modbus":
        return describe_named(profile)
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
        f"  billed:         {_billed(profile)}",
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


def describe_named(profile: Profile) -> str:
    """The values a profile of IEC 62056-21 reads: data set address and position, unit."""
    lines = [
        f"{profile.id}: {profile.manufacturer} {profile.model} ({profile.protocol})",
        f"  source:         {profile.source}",
    ]
    if profile.firmware:
        lines.append(f"  firmware:       {profile.firmware}")
    lines += [
        f"  response time:  {profile.response_time_ms} ms",
        f"  zones:          {', '.join(profile.zones()) or '-'}",
        f"  billed:         {_billed(profile)}",
    ]
    if profile.notes:
        lines.append(f"  notes:          {' '.join(profile.notes.split())}")
    rows = [["name", "quantity", "zone", "code", "index", "scale", "unit"]]
    for reg in [*profile.registers, *profile.identification.values()]:
        rows.append(
            [
                reg.name,
                reg.quantity,
                reg.zone or "",
                reg.code,
                str(reg.index),
                format(reg.scale, "f"),
                reg.unit,
            ]
        )
    lines.append("")
    lines += ["  " + line for line in _table(rows)]
    return "\n".join(lines)
