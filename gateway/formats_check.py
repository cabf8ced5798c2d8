"""`meter-gateway formats check [DIR]`: every text format's declaration read and its test vectors
run through the grammar, each format alone (gateway/formats.py says what a declaration holds)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.formats import DEFAULT_ENABLED, FormatError, FormatSet, TextFormat, Vector, load_formats
from gateway.grammar import Command, ParsedReading, parse_message
from gateway.grammar_failures import ParseFailure


def _expected(vector: Vector) -> str:
    if vector.refused:
        return f"refused ({vector.refused})"
    return _describe(
        ParsedReading(
            vector.account,
            vector.serial,
            tuple((None, v) for v in vector.values) + tuple(sorted(vector.zones.items())),
            vector.meter_number,
            vector.contact,
            vector.cut,
            tuple(vector.ignored),
        )
    )


def _describe(reading: ParsedReading) -> str:
    values = ", ".join(f"{zone} {value}" if zone else value for zone, value in reading.values)
    parts = [f"account {reading.account}" if reading.account else "no account"]
    parts += [f"meter {reading.meter_serial}"] if reading.meter_serial else []
    parts += [f"meter no. {reading.meter_number}"] if reading.meter_number else []
    parts.append(f"values {values}")
    parts += ["decimals cut"] if reading.cut else []
    parts += [f"contact {reading.contact}"] if reading.contact else []
    parts += [f"not taken {' '.join(reading.ignored)}"] if reading.ignored else []
    return ", ".join(parts)


def _matches(vector: Vector, got: ParsedReading | Command | ParseFailure) -> bool:
    if vector.refused:
        return isinstance(got, ParseFailure) and got.code == vector.refused
    if not isinstance(got, ParsedReading):
        return False
    want = (
        vector.account,
        vector.serial,
        tuple((None, v) for v in vector.values) + tuple(sorted(vector.zones.items())),
        vector.meter_number,
        vector.contact,
        vector.cut,
        tuple(vector.ignored),
    )
    return any(
        (r.account, r.meter_serial, r.values, r.meter_number, r.contact, r.cut, r.ignored) == want
        for r in got.readings()
    )


def _shown(got: ParsedReading | Command | ParseFailure) -> str:
    if isinstance(got, ParseFailure):
        return f"refused ({got.code}): {got.message_ru}"
    if isinstance(got, Command):
        return f"the command {got.name}"
    return " | or | ".join(_describe(r) for r in got.readings())


def run_vectors(fmt: TextFormat) -> list[str]:
    """One error per vector the grammar does not read as declared, under this format alone."""
    alone = FormatSet.of((fmt,))
    errors = []
    for i, vector in enumerate(fmt.vectors):
        got = parse_message(vector.text, alone)
        if not _matches(vector, got):
            errors.append(
                f"{fmt.path or fmt.id}: vectors[{i}] {vector.text!r}: read as {_shown(got)}; "
                f"declared {_expected(vector)}"
            )
    return errors


def check_formats(directory: str | None, enabled: Sequence[str]) -> tuple[list[TextFormat], list[str]]:
    """(formats whose vectors pass, errors): the shipped ones and `directory`'s; and whether the
    `enabled` ones exist and agree with each other."""
    try:
        known = load_formats(directory)
    except (FormatError, OSError) as exc:
        return [], [str(exc)]
    good, errors = [], []
    for fmt in known.values():
        found = run_vectors(fmt)
        errors += found
        if not found:
            good.append(fmt)
    missing = [name for name in enabled if name not in known]
    if missing:
        errors.append(f"enabled but not declared: {', '.join(missing)}")
    else:
        try:
            FormatSet.of(tuple(known[name] for name in enabled))
        except FormatError as exc:
            errors.append(str(exc))
    return good, errors


def describe(fmt: TextFormat, enabled: bool) -> str:
    lines = [
        f"{fmt.id}: {fmt.retailer}{'' if enabled else ' (not enabled)'}",
        f"  layouts: {'; '.join(fmt.layouts)}",
        f"  example: {fmt.example}",
        f"  decimals: {'cut (digits before the comma only)' if fmt.decimals == 'cut' else 'kept'}",
    ]
    if fmt.codes:
        numbered = " (a digit before the code numbers the meter)" if fmt.meter_number else ""
        lines.append("  codes: " + ", ".join(f"{c} = {z}" for c, z in fmt.codes.items()) + numbered)
    if fmt.other_codes:
        lines.append("  not taken: " + ", ".join(f"{c} ({w})" for c, w in fmt.other_codes.items()))
    lines.append(f"  {len(fmt.vectors)} test vectors")
    return "\n".join(lines)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`formats check [DIR]` on the CLI's subcommands."""
    fmt = sub.add_parser("formats", help="residents' SMS and chat formats")
    fmtsub = fmt.add_subparsers(dest="formats_command", required=True)
    check = fmtsub.add_parser("check", help="read every format declaration and run its test vectors")
    check.add_argument("dir", nargs="?", help="an operator's own declarations (default: [text_formats] dir)")
    check.set_defaults(func=formats_check)


def formats_check(args: argparse.Namespace) -> int:
    from gateway.cli import config_of
    from gateway.config import ConfigError

    directory = args.dir
    enabled: Sequence[str] = DEFAULT_ENABLED
    try:
        section = config_of(args).text_formats
        enabled, directory = section.enabled, directory or section.dir
    except ConfigError as exc:  # the configuration names a broken format: check shows why
        print(
            f"note: configuration not read ({str(exc).splitlines()[0]}); checking the defaults",
            file=sys.stderr,
        )
    good, errors = check_formats(directory, enabled)
    for fmt in good:
        print(describe(fmt, fmt.id in enabled))
        print()
    print(f"enabled: {', '.join(enabled)}")
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    print(f"{len(good)} formats, {len(errors)} errors", file=sys.stderr)
    return 1 if errors else 0
