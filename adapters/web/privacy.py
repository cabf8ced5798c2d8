"""What the web cabinet keeps of a resident (`meter_gateway.privacy`, gateway/plugins.py): its
sign-in records, namely the attempts and one-time codes the core's verification keeps
(gateway/store/schema_verification.py) and the cabinet's sessions (`web_sessions`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.web.cabinet import SCOPE
from adapters.web.tables import web_sessions
from gateway.store.schema import accounts
from gateway.store.schema_verification import signin_attempts, signin_codes


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


async def report_lines(conn: AsyncConnection, account_id: int, phones: list[str]) -> list[str]:
    """`privacy report`: the cabinet's sign-in attempts, sessions and one-time codes of the account."""
    number = (await conn.execute(select(accounts.c.number).where(accounts.c.id == account_id))).scalar_one()
    tries = (
        await conn.execute(
            select(
                func.count(), func.count().filter(signin_attempts.c.ok), func.max(signin_attempts.c.at)
            ).where(signin_attempts.c.scope == SCOPE, signin_attempts.c.subject == number)
        )
    ).one()
    sessions = (
        await conn.execute(
            select(func.count(), func.count().filter(web_sessions.c.revoked_at.is_(None))).where(
                web_sessions.c.scope == SCOPE, web_sessions.c.subject == number
            )
        )
    ).one()
    codes = (await conn.execute(select(func.count()).where(signin_codes.c.account == number))).scalar_one()
    return [
        "",
        "Cabinet sign-in records:",
        f"  sign-in attempts: {tries[0]} ({tries[1]} successful), last {_when(tries[2])}",
        f"  sessions: {sessions[0]} ({sessions[1]} not signed out)",
        f"  one-time codes sent (kept as keyed hashes): {codes}",
    ]
