"""Where the gateway finds its doors: entry points declared in pyproject.toml, never names in code.

A door (a channel or an HTTP surface) is a package under `adapters/` that declares itself in
`pyproject.toml`; the core and the composition root only read these declarations, so a new door
is a new package and a few lines there (then `pip install -e .` again, which `make` does when
pyproject.toml changes). The groups:

| group | value | what it gives |
|---|---|---|
| `meter_gateway.config` | `pkg.module:Model` | the `[NAME]` section of gateway.toml and its pydantic model |
| `meter_gateway.tables` | `pkg.module` | a module defining the door's tables on `gateway.store.schema.metadata` |
| `meter_gateway.channels` | `pkg.module` | a module with `install(host, app)`: its routes, background tasks, probes |
| `meter_gateway.commands` | `pkg.module:add_commands` | `add_commands(subparsers)`: the door's `meter-gateway` subcommands |
| `meter_gateway.privacy` | `pkg.module` | the door's personal data: optional `report_lines(conn, account_id, phones) -> list[str]` (for `privacy report`), `sources(conn, account_id) -> list[str]` (its `inbound.source` values that are the account holder's, for the report), `purge(conn, before, limit) -> int` (raw messages past retention, at most `limit` in the caller's transaction) and `prepare(engine)` (run at start-up, after the privacy key is loaded) |
| `meter_gateway.demo` | `pkg.module:demo_config` | `demo_config(config) -> DemoPart`: what `meter-gateway demo` sets, runs and prints |

Config models are loaded while `gateway.config` is imported, so their modules must import
nothing heavier than pydantic and `gateway.section`.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

CONFIG = "meter_gateway.config"
TABLES = "meter_gateway.tables"
CHANNELS = "meter_gateway.channels"
PRIVACY = "meter_gateway.privacy"
COMMANDS = "meter_gateway.commands"
DEMO = "meter_gateway.demo"


@dataclass
class DemoPart:
    """A door's part of `meter-gateway demo`: configuration sections it replaces (name -> the
    section's new value), background tasks it runs beside the gateway (simulators), and lines
    the demo prints to try it."""

    overrides: dict[str, Any] = field(default_factory=dict)
    background: list[Callable[[Any], Awaitable[None]]] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)


def declared(group: str) -> list[EntryPoint]:
    """The declarations of one group, in the order of their names (so every process agrees)."""
    found = sorted(entry_points(group=group), key=lambda e: e.name)
    names = [e.name for e in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:  # two installed distributions declaring one name: refuse rather than guess
        raise RuntimeError(f"{group}: declared more than once: {', '.join(duplicates)}")
    return found


def config_sections() -> dict[str, Any]:
    """Section name -> its pydantic model, for every door that has a configuration section."""
    return {e.name: e.load() for e in declared(CONFIG)}


@cache
def load_tables() -> tuple[str, ...]:
    """Import every door's table module, so that `metadata` knows every table (migrations,
    tests emptying the database); returns the modules' names."""
    names = tuple(e.value for e in declared(TABLES))
    for name in names:
        importlib.import_module(name)
    return names


def channel_modules() -> list[ModuleType]:
    """The modules whose `install(host, app)` wires a door into `meter-gateway run`."""
    return [importlib.import_module(e.value) for e in declared(CHANNELS)]


def privacy_modules() -> list[ModuleType]:
    """The doors' modules that say what personal data they keep (see the table above)."""
    return [importlib.import_module(e.value) for e in declared(PRIVACY)]


def command_adders() -> list[Callable[[Any], None]]:
    """`add_commands(subparsers)` of every door that brings subcommands."""
    return [e.load() for e in declared(COMMANDS)]


def demo_parts(config: Any) -> list[DemoPart]:
    """Each declared door's part of the demo, given the configuration read so far."""
    return [e.load()(config) for e in declared(DEMO)]
