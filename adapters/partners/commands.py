"""`meter-gateway import readings FILE [--format ID] [--partner ID] [--report OUT]` and
`meter-gateway layouts check [DIR]`: the partners' door's subcommands (declared in pyproject.toml).

`import readings` imports a partner's file into the configured database through the same
intake as `run` (a gateway may be running on it meanwhile) and writes the result file in the
partner's layout beside the file (`NAME.result.EXT`) or to `--report`; a progress bar on a
terminal. Exit code 0 when the file was imported (whatever the rows' verdicts), 1 when some
rows could not be read, 2 when the file as a whole could not be.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from adapters.partner_files.config import PARTNER_ID


def add_commands(sub: Any) -> None:
    from gateway.cli import command_group

    imp = command_group(sub, "import")
    readings = imp.add_parser("readings", help="import a partner's file of readings (CSV, XLSX, DBF)")
    readings.add_argument("file")
    readings.add_argument(
        "--format", help="the layout's id (default: the partner's, or the one whose columns fit)"
    )
    readings.add_argument(
        "--partner", help="the partner's id (default: the partner configured with the layout)"
    )
    readings.add_argument(
        "--report", help="where the result file goes (default: NAME.result.EXT beside the file)"
    )
    readings.set_defaults(func=import_readings)

    lay = sub.add_parser("layouts", help="partners' file layouts")
    laysub = lay.add_subparsers(dest="layouts_command", required=True)
    check = laysub.add_parser("check", help="read every layout and run its test vectors")
    check.add_argument("dir", nargs="?", help="the retailer's own layouts (default: [files] layouts_dir)")
    check.set_defaults(func=layouts_check)


def _default_report(path: Path) -> Path:
    return path.with_name(f"{path.stem}.result{path.suffix}")


def import_readings(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError
    from tqdm import tqdm

    from adapters.partner_files.config import FilesConfig
    from adapters.partner_files.importing import Importer, ImportSummary, choose_layout
    from adapters.partner_files.layouts import configured_layouts
    from adapters.partner_files.readers import FileProblem
    from gateway.calendar import WorkCalendar
    from gateway.cli import _database_error, config_of
    from gateway.intake import Intake
    from gateway.store.database import create_engine
    from gateway.store.migrate import upgrade

    config = config_of(args)
    files = config.section("files", FilesConfig)
    path = Path(args.file)
    if not path.is_file():
        print(f"error: {args.file}: no such file", file=sys.stderr)
        return 2
    if args.partner is not None and not re.match(PARTNER_ID, args.partner):
        print(f"error: --partner {args.partner!r}: a-z, 0-9, - and _, at most 32", file=sys.stderr)
        return 2
    layouts = configured_layouts(files)
    partner = files.partner(args.partner) if args.partner else None
    wanted = args.format or (partner.layout if partner else None)
    try:
        layout = choose_layout(path, layouts, wanted)
    except FileProblem as exc:
        print(f"error: {args.file}: {exc.message_en}", file=sys.stderr)
        return 2
    partner_id = args.partner or next((p.id for p in files.partners if p.layout == layout.id), layout.id)
    report = Path(args.report) if args.report else _default_report(path)
    bar = tqdm(unit=" rows", disable=not sys.stderr.isatty(), file=sys.stderr)

    def progress(done: int, total: int | None) -> None:
        if total is not None:
            bar.total = total
            bar.refresh()
        bar.update(done)

    async def go() -> ImportSummary:
        engine = create_engine(config.database.url)
        try:
            if config.database.auto_upgrade:
                await upgrade(engine)
            calendar = WorkCalendar(config.calendar.timezone, config.calendar.holidays_override)
            intake = Intake(engine, config, calendar)
            await intake.start()
            try:
                importer = Importer(engine, intake, files, ZoneInfo(config.calendar.timezone), intake.clock)
                return await importer.run(
                    path, path.name, partner_id, layout, "cli", "command line", lambda _id: report, progress
                )
            finally:
                await intake.stop()
        finally:
            await engine.dispose()

    try:
        summary = asyncio.run(go())
    except FileProblem as exc:
        bar.close()
        print(f"error: {args.file}: {exc.message_en}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        bar.close()
        return _database_error(exc, config.database.url)
    bar.close()
    print(summary.summary())
    return 1 if summary.unreadable else 0


def layouts_check(args: argparse.Namespace) -> int:
    from adapters.partner_files.checking import check_layouts, describe
    from adapters.partner_files.config import FilesConfig
    from gateway.cli import config_of
    from gateway.config import ConfigError

    directory = args.dir
    timezone = "Europe/Moscow"
    partners: list[Any] = []
    try:
        config = config_of(args)
        files = config.section("files", FilesConfig)
        directory, timezone, partners = (
            directory or files.layouts_dir,
            config.calendar.timezone,
            files.partners,
        )
    except ConfigError as exc:
        print(
            f"note: configuration not read ({str(exc).splitlines()[0]}); checking the shipped layouts",
            file=sys.stderr,
        )
    good, errors = check_layouts(directory, ZoneInfo(timezone))
    for layout in good:
        print(describe(layout, [p.id for p in partners if p.layout == layout.id]))
        print()
    known = {layout.id for layout in good}
    for i, p in enumerate(partners):
        if p.layout not in known:
            errors.append(
                f"files.partners[{i}] ({p.id}): layout {p.layout!r} is not declared or does not check"
            )
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    print(f"{len(good)} layouts, {len(errors)} errors", file=sys.stderr)
    return 1 if errors else 0
