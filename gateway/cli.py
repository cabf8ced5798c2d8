"""`meter-gateway`: run the gateway, migrate, import the registry, export; the doors add their own
commands (gateway/plugins.py), such as `profiles check`."""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from gateway import formats_check, plugins
from gateway.config import Config, ConfigError, load_config
from gateway.logs import setup_logging
from gateway.plugins import DemoPart
from gateway.resources import package_path

DEMO_DB = "var/demo.db"
DEMO_BILLING_TOKEN = "demo-billing-token"


def config_path(args: argparse.Namespace) -> str | None:
    """The configuration file the command line names: `--config FILE`, else ./gateway.toml if present."""
    if args.config is None and Path("gateway.toml").exists():
        return "gateway.toml"
    return str(args.config) if args.config is not None else None


def config_of(args: argparse.Namespace) -> Config:
    """The configuration the command line names (`config_path`), checked."""
    return load_config(config_path(args))


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.service import Gateway, serve

    config = config_of(args)
    try:
        asyncio.run(serve(Gateway(config)))
    except OSError as exc:
        print(f"error: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def demo_config(config: Config) -> tuple[Config, list[DemoPart]]:
    """`config` with what the demo adds where the operator has set nothing: its database,
    registry, billing token, one-time codes to the log, and each declared door's part (a device
    token; Kannel's SMS route; the FastAGI server; a demo employee; simulated meters; MQTT when a
    broker answers); with those parts."""
    overrides: dict[str, Any] = {
        "database": config.database.model_copy(update={"url": f"sqlite+aiosqlite:///{DEMO_DB}"}),
        "registry": config.registry.model_copy(
            update={"csv": str(package_path("gateway.demo", "registry.csv"))}
        ),
        "billing": config.billing.model_copy(
            update={"tokens": config.billing.tokens or [DEMO_BILLING_TOKEN]}
        ),
        # No SMS centre in the demo: residents' one-time codes are written to the console (log).
        "verification": config.verification.model_copy(update={"code_to_log": True}),
    }
    parts = plugins.demo_parts(config)
    for part in parts:
        overrides.update(part.overrides)
    return config.model_copy(update=overrides), parts


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.service import Gateway, serve

    config, parts = demo_config(config_of(args))
    gateway = Gateway(config)
    for part in parts:
        gateway.background.extend(part.background)
    base = f"http://{config.http.host}:{config.http.port}"
    door_lines = "\n".join(line for part in parts for line in part.hints)
    print(
        f"""meter-gateway demo on {base} (database {DEMO_DB})
{door_lines}
Try:
  curl {base}/healthz
  curl {base}/metrics | grep gateway_
  curl -X POST -H 'Authorization: Bearer {DEMO_BILLING_TOKEN}' -d '{{"limit":10}}' {base}/api/v1/billing/batches
  curl -X POST -H 'Authorization: Bearer {DEMO_BILLING_TOKEN}' {base}/api/v1/billing/batches/BATCH_ID/commit
  curl -H 'Authorization: Bearer {DEMO_BILLING_TOKEN}' {base}/api/v1/billing/sla
Web cabinet: {base}/cabinet/ (account 2000001; the sign-in code appears in this console's log, "verification.code_to_log: account 2000001, Код входа ...")
Business cabinet: {base}/business/ (contract 12-345/2024, phone +79160000001; the code appears as "verification.code_to_log: phone +7 9** ***-**-**, Код входа в кабинет по договору: ...")
Stop with Ctrl+C.""",
        flush=True,
    )
    asyncio.run(serve(gateway))
    return 0


def _database_error(exc: Exception, url: str) -> int:
    """A database that cannot be reached or has no schema: say so in one line, not a traceback."""
    detail = getattr(exc, "orig", None) or exc
    print(f"error: database {_safe_url(url)}: {type(detail).__name__}: {detail}", file=sys.stderr)
    return 1


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.store.database import create_engine
    from gateway.store.migrate import upgrade

    config = config_of(args)

    async def go() -> None:
        engine = create_engine(config.database.url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(go())
    except (SQLAlchemyError, OSError) as exc:
        return _database_error(exc, config.database.url)
    print(f"database {_safe_url(config.database.url)} is at the latest schema")
    return 0


def cmd_import_registry(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.registry import ImportReport, import_registry
    from gateway.store.database import create_engine
    from gateway.store.migrate import upgrade

    config = config_of(args)
    if not Path(args.file).is_file():
        print(f"error: {args.file}: no such file", file=sys.stderr)
        return 2

    async def go() -> ImportReport:
        engine = create_engine(config.database.url)
        try:
            if config.database.auto_upgrade:
                await upgrade(engine)
            return await import_registry(engine, args.file, branches=config.branches.declared())
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(go())
    except UnicodeDecodeError as exc:
        print(
            f"error: {args.file}: not UTF-8 text (byte {exc.start}); save the registry as CSV UTF-8",
            file=sys.stderr,
        )
        return 2
    except SQLAlchemyError as exc:
        return _database_error(exc, config.database.url)
    except OSError as exc:
        print(f"error: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 1 if report.refused else 0


EXPORT_FIELDS = (
    "reading_id", "account", "meter_serial", "zone", "value", "taken_at", "received_at",
    "channel", "source", "employee", "period", "verdict", "reasons", "due_at", "committed_at",
)  # fmt: skip


def _since(text: str) -> datetime:
    """A date or time from the command line; without a zone it is the retailer's local time."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (2026-11-01) or time (2026-11-01T10:00+03:00)"
        ) from None


def _in_utc(moment: datetime | None, timezone: str) -> datetime | None:
    """`--since 2026-11-01` means midnight in the retailer's zone (calendar.timezone), as billing does."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.astimezone(UTC)


def cmd_export(args: argparse.Namespace) -> int:
    import os

    from sqlalchemy.exc import SQLAlchemyError

    from gateway.exporting import export_readings

    config = config_of(args)
    since = _in_utc(args.since, config.calendar.timezone)
    until = _in_utc(args.until, config.calendar.timezone)
    assert since is not None
    out: TextIO
    target: Path | None = None
    partial: Path | None = None
    if args.output and args.output != "-":
        # Written beside the target and renamed when complete: a failed export leaves no file that
        # looks like a finished one.
        target = Path(args.output)
        partial = target.with_name(target.name + ".part")
        try:
            out = open(partial, "w", encoding="utf-8-sig" if args.format == "csv" else "utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            print(f"error: {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    else:
        out = sys.stdout
        if isinstance(out, io.TextIOWrapper):
            out.reconfigure(encoding="utf-8")
        if args.format == "csv":
            out.write("\ufeff")
    ok = False
    try:
        count = asyncio.run(
            export_readings(config, out, args.format, since, until, args.all, progress=sys.stderr.isatty())
        )
        ok = True
    except SQLAlchemyError as exc:
        return _database_error(exc, config.database.url)
    finally:
        if out is not sys.stdout:
            out.close()
        if partial is not None and target is not None:
            if ok:
                os.replace(partial, target)
            else:
                partial.unlink(missing_ok=True)
    print(f"exported {count} readings", file=sys.stderr)
    return 0


def cmd_privacy_report(args: argparse.Namespace) -> int:
    """`privacy report ACCOUNT`: what is stored about an account, in full; exit 1 when unknown."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway import privacy
    from gateway.privacy_report import privacy_report
    from gateway.store.database import create_engine
    from gateway.store.migrate import upgrade

    config = config_of(args)

    async def go() -> list[str] | None:
        engine = create_engine(config.database.url)
        try:
            if config.database.auto_upgrade:
                await upgrade(engine)
            privacy.use_secret(await privacy.load_secret(engine, config.privacy, datetime.now(UTC)))
            return await privacy_report(engine, config, args.account)
        finally:
            await engine.dispose()

    try:
        lines = asyncio.run(go())
    except (SQLAlchemyError, OSError) as exc:
        return _database_error(exc, config.database.url)
    if lines is None:
        print(f"error: account {args.account} is not in the registry", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """`init DIR`: a starter gateway.toml and an empty registry, then what to do next."""
    from datetime import date

    from gateway.starter import init_directory

    directory = Path(args.dir)
    try:
        config_path, registry_path = init_directory(
            directory, Path(args.state_dir) if args.state_dir else directory, date.today()
        )
    except (FileExistsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"""wrote {config_path} (every section; secrets generated; readable by you only)
wrote {registry_path} (the header only)
Next:
  1. edit {config_path}: [calendar] (zone, window, cut-off), [http] (address), [senders], and the
     sections of the doors you use ([sms], [telegram], [cabinet], [ivr], [modbus], [mqtt]);
     give billing its token from [billing] tokens and devices theirs from [devices] tokens
  2. fill {registry_path}: one row per meter (README, "Registry CSV")
  3. meter-gateway --config {config_path} config check
  4. meter-gateway --config {config_path} db upgrade
  5. meter-gateway --config {config_path} run   (as a service: deploy/systemd/meter-gateway.service)"""
    )
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    """`config check`: the configuration validated as `run` would, without starting anything."""
    from gateway.service import Gateway

    config = config_of(args)  # ConfigError (every wrong key, named) goes to main(): exit code 2
    problems: list[str] = []
    if config.registry.csv and not Path(config.registry.csv).is_file():
        problems.append(f"registry.csv: {config.registry.csv}: no such file")
    if config.calendar.holidays_override and not Path(config.calendar.holidays_override).is_file():
        problems.append(f"calendar.holidays_override: {config.calendar.holidays_override}: no such file")
    for branch_id, branch in config.branches.declared().items():
        if branch.holidays_override and not Path(branch.holidays_override).is_file():
            problems.append(
                f"branches.{branch_id}.holidays_override: {branch.holidays_override}: no such file"
            )
    if not problems:
        # The doors' own checks at start-up (firmware profiles against the meters, the telephone
        # menu against its prompts) run when they are installed: build the application, start nothing.
        gateway = Gateway(config)
        try:
            gateway.build_app()
        finally:
            asyncio.run(gateway.engine.dispose())
    if problems:
        raise ConfigError("\n".join(problems))
    print(f"{config_path(args) or 'the defaults (no gateway.toml)'}: valid")
    return 0


def command_group(sub: Any, name: str) -> Any:
    """The subcommands of the core's group `name` (`import`), for a door that adds one of its own
    (`import readings`). argparse keeps them only on the group's parser."""
    parser = sub.choices[name]
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meter-gateway", description=__doc__)
    parser.add_argument("--config", help="TOML configuration file (default: gateway.toml if present)")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every configured channel, the pollers and the billing API")
    # The README writes `run --config FILE` too; SUPPRESS keeps a top-level --config when not given here.
    run.add_argument("--config", default=argparse.SUPPRESS, help="TOML configuration file")
    run.set_defaults(func=cmd_run)
    demo = sub.add_parser(
        "demo", help="run on an embedded SQLite file with demo accounts and simulated meters"
    )
    demo.set_defaults(func=cmd_demo)

    db = sub.add_parser("db", help="database schema")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("upgrade", help="apply the schema migrations").set_defaults(func=cmd_db_upgrade)

    imp = sub.add_parser("import", help="load data")
    impsub = imp.add_subparsers(dest="import_command", required=True)
    reg = impsub.add_parser("registry", help="load or update accounts and meters from CSV")
    reg.add_argument("file")
    reg.set_defaults(func=cmd_import_registry)

    exp = sub.add_parser("export", help="write readings for billing or audit")
    exp.add_argument("--since", type=_since, required=True, help="received at or after (date or ISO time)")
    exp.add_argument("--until", type=_since, help="received before")
    exp.add_argument("--format", choices=("csv", "json"), default="csv")
    exp.add_argument("--output", "-o", help="file to write (default: standard output)")
    exp.add_argument("--all", action="store_true", help="every verdict, not only accepted readings")
    exp.set_defaults(func=cmd_export)

    init = sub.add_parser("init", help="write a commented starter gateway.toml and an empty registry")
    init.add_argument("dir", help="where to write gateway.toml and registry.csv (created if missing)")
    init.add_argument("--state-dir", help="where the SQLite database goes (default: DIR)")
    init.set_defaults(func=cmd_init)

    cfg = sub.add_parser("config", help="the configuration file")
    cfgsub = cfg.add_subparsers(dest="config_command", required=True)
    check = cfgsub.add_parser(
        "check", help="validate the configuration without starting; exit code 2 on errors"
    )
    check.add_argument("--config", default=argparse.SUPPRESS, help="TOML configuration file")
    check.set_defaults(func=cmd_config_check)

    priv = sub.add_parser("privacy", help="personal data (152-FZ)")
    privsub = priv.add_subparsers(dest="privacy_command", required=True)
    rep = privsub.add_parser("report", help="print everything stored about an account (in full)")
    rep.add_argument("account")
    rep.set_defaults(func=cmd_privacy_report)

    formats_check.add_commands(sub)  # `formats check`: residents' text formats (gateway/formats.py)
    for add_commands in plugins.command_adders():  # the doors' own subcommands
        add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level.upper())
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
