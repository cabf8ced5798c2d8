"""`meter-gateway profiles check [DIR]`: the meters' subcommands (declared in pyproject.toml)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_commands(sub: Any) -> None:
    """Add `profiles check` to the CLI's subcommands."""
    prof = sub.add_parser("profiles", help="firmware profiles")
    profsub = prof.add_subparsers(dest="profiles_command", required=True)
    check = profsub.add_parser("check", help="validate profiles and print each model's register map")
    check.add_argument("dir", nargs="?")
    check.set_defaults(func=profiles_check)


def profiles_check(args: argparse.Namespace) -> int:
    from adapters.meters.profiles import DEFAULT_DIR, check_profiles, describe

    directory = args.dir or str(DEFAULT_DIR)
    profiles, errors = check_profiles(directory)
    for profile in profiles:
        print(describe(profile))
        print()
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    print(f"{len(profiles)} profiles, {len(errors)} errors", file=sys.stderr)
    return 1 if errors else 0
