"""The operators' desk's part of the command line and of the demo (declared in pyproject.toml):
`meter-gateway operator add LOGIN --name "ФИО"` and `operator hash`, and the demo employee."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime
from typing import Any

from adapters.web.config import OperatorsConfig, OperatorUser, SiteFormConfig
from gateway.plugins import DemoPart

DEMO_LOGIN = "demo"
DEMO_OPERATOR_PASSWORD = "demo-operator"


def add_commands(sub: Any) -> None:
    op = sub.add_parser("operator", help="staff of the operators' desk (/operator/)")
    opsub = op.add_subparsers(dest="operator_command", required=True)
    add = opsub.add_parser("add", help="add an employee or reset their password (read from stdin or typed)")
    add.add_argument("login")
    add.add_argument("--name", required=True, help='full name recorded with readings, e.g. "Иванова А. А."')
    add.set_defaults(func=cmd_operator)
    opsub.add_parser("hash", help="print a password hash for [operators] users").set_defaults(
        func=cmd_operator
    )


def _read_password() -> str | None:
    """A new password: typed twice on a terminal, or the first line of standard input."""
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            print("error: the passwords differ", file=sys.stderr)
            return None
        return first
    return sys.stdin.readline().rstrip("\n")


def cmd_operator(args: argparse.Namespace) -> int:
    """`operator add LOGIN --name "ФИО"` stores an employee; `operator hash` prints a hash for the config."""
    from adapters.web.passwords import add_operator, hash_password  # the desk's own password scheme
    from gateway.cli import config_of

    if args.operator_command == "add" and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", args.login):
        print("error: the login may have Latin letters, digits, '.', '_' and '-' only", file=sys.stderr)
        return 2
    password = _read_password()
    if password is None:
        return 2
    if len(password) < 8:
        print("error: the password must have at least 8 characters", file=sys.stderr)
        return 2
    if args.operator_command == "hash":
        print(hash_password(password))
        return 0
    config = config_of(args)

    async def go() -> bool:
        from gateway.store.database import create_engine
        from gateway.store.migrate import upgrade

        engine = create_engine(config.database.url)
        try:
            if config.database.auto_upgrade:
                await upgrade(engine)
            return await add_operator(engine, args.login, args.name, password, datetime.now(UTC))
        finally:
            await engine.dispose()

    added = asyncio.run(go())
    print(f"operator {args.login} ({args.name}) {'added' if added else 'updated'}")
    return 0


def demo_config(config: Any) -> DemoPart:
    """A demo employee for /operator/, unless employees are configured; the form on the site."""
    base = f"http://{config.http.host}:{config.http.port}"
    hint = f"Operators' desk: {base}/operator/ (login {DEMO_LOGIN}, password {DEMO_OPERATOR_PASSWORD}); paper forms: {base}/operator/paper"
    site = {"site_form": config.section("site_form", SiteFormConfig).model_copy(update={"enabled": True})}
    site_hint = f"The form on the site, without signing in: {base}/form/ (account 2000001)"
    desk = config.section("operators", OperatorsConfig)
    if desk.users:
        return DemoPart(overrides=site, hints=[f"Operators' desk: {base}/operator/", site_hint])
    from adapters.web.passwords import hash_password

    user = OperatorUser(
        login=DEMO_LOGIN, name="Демо Оператор", password_hash=hash_password(DEMO_OPERATOR_PASSWORD)
    )
    overrides = {"operators": desk.model_copy(update={"users": [user]}), **site}
    return DemoPart(overrides=overrides, hints=[hint, site_hint])
