"""`meter-gateway import 80020 FILE [--report OUT]`: a head-end file into the configured database
(declared in pyproject.toml as the meters' 80020 subcommands).

The report goes to standard output and, with `--report`, to a file. Exit code 0 when the file was
imported (whatever its values' outcomes), 1 when some values were refused or conflicted, 2 when
the file as a whole could not be read.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def add_commands(sub: Any) -> None:
    from gateway.cli import command_group

    imp = command_group(sub, "import")
    cmd = imp.add_parser("80020", help="import an XML 80020/80040 file of interval energy (head-end systems)")
    cmd.add_argument("file")
    cmd.add_argument("--report", help="also write the report to this file")
    cmd.set_defaults(func=import_80020)


def import_80020(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from adapters.meters.xml80020.config import Xml80020Config
    from adapters.meters.xml80020.importing import FileReport, import_file
    from gateway.cli import _database_error, config_of
    from gateway.store.database import create_engine
    from gateway.store.migrate import upgrade

    config = config_of(args)
    section = config.section("xml80020", Xml80020Config)
    path = Path(args.file)
    if not path.is_file():
        print(f"error: {args.file}: no such file", file=sys.stderr)
        return 2

    async def go() -> FileReport:
        engine = create_engine(config.database.url)
        try:
            if config.database.auto_upgrade:
                await upgrade(engine)
            return await import_file(
                engine,
                section,
                path,
                via="cli",
                clock=lambda: datetime.now(UTC),
                default_max_power_kw=config.validation.devices.default_max_power_kw,
            )
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(go())
    except SQLAlchemyError as exc:
        return _database_error(exc, config.database.url)
    except OSError as exc:
        print(f"error: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    text = report.text()
    print(text, end="")
    if args.report:
        Path(args.report).write_text(text, encoding="utf-8")
    if report.error is not None:
        return 2
    totals = report.totals()
    return 1 if totals["refused"] or totals["conflict"] else 0
