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

from gateway import plugins
from gateway.config import Config, ConfigError, load_config
from gateway.logs import setup_logging
from gateway.plugins import DemoPart

DEMO_DB = "var/demo.db"
DEMO_BILLING_TOKEN = "demo-billing-token"


def config_of(args: argparse.Namespace) -> Config:
    """The configuration the command line names: `--config FILE`, else ./gateway.toml if present."""
    path = args.config
    if path is None and Path("gateway.toml").exists():
        path = "gateway.toml"
    return load_config(path)


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
            update={"csv": str(Path(__file__).parent / "demo" / "registry.csv")}
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
            return await import_registry(engine, args.file)
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

    priv = sub.add_parser("privacy", help="personal data (152-FZ)")
    privsub = priv.add_subparsers(dest="privacy_command", required=True)
    rep = privsub.add_parser("report", help="print everything stored about an account (in full)")
    rep.add_argument("account")
    rep.set_defaults(func=cmd_privacy_report)

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
