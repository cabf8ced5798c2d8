"""`meter-gateway privacy report ACCOUNT`: everything the gateway keeps about one account.

For the operator answering a data subject's request (152-FZ, art. 14): the registry's data,
phones and linked chats are printed in full, and the report says so. Phones and chat ids kept
elsewhere as keyed hashes are found through the same hash (gateway/privacy.py), so the report
needs the gateway's secret: the configured one or the one kept in the database.
Each door adds what it keeps (`report_lines` of its `meter_gateway.privacy` module,
gateway/plugins.py): the SMS door the phones with their opt-outs and reply log, the Telegram door
the linked chats (and, by `sources`, which raw messages are theirs), the web cabinet its sign-in
records.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from types import ModuleType

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import business, plugins
from gateway.config import Config
from gateway.store.schema import RESIDENT_PAYLOAD_CHANNELS, accounts, audit, inbound, meters, phones, readings

HEADER = (
    "Personal data held about account {number}. Printed in full for answering the data subject's "
    "request: hand it to the verified holder only."
)


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


async def _sources(module: ModuleType, conn: AsyncConnection, account_id: int) -> list[str]:
    """The `inbound.source` values a door knows to be the account holder's (optional hook)."""
    sources = getattr(module, "sources", None)
    return [] if sources is None else list(await sources(conn, account_id))


async def privacy_report(engine: AsyncEngine, config: Config, number: str) -> list[str] | None:
    """The report's lines; None when the account is not in the registry."""
    retention = timedelta(days=config.privacy.payload_retention_days)
    async with engine.connect() as conn:
        account = (await conn.execute(select(accounts).where(accounts.c.number == number))).first()
        if account is None:
            return None
        out = [HEADER.format(number=number), ""]
        out += [
            "Registry:",
            f"  account:   {account.number}",
            f"  address:   {account.address or '-'}",
            f"  time zone: {account.timezone or '(the branch zone)'}",
            f"  branch:    {account.branch or 'default'}",
            f"  updated:   {_when(account.updated_at)}",
        ]
        meter_rows = (
            await conn.execute(
                select(meters.c.serial, meters.c.model, meters.c.zones, meters.c.active)
                .where(meters.c.account_id == account.id)
                .order_by(meters.c.serial)
            )
        ).all()
        for m in meter_rows:
            state = "active" if m.active else "inactive"
            out.append(f"  meter:     {m.serial} ({m.model or 'model not given'}, zones {m.zones}, {state})")
        # A business customer's contact persons are people too (gateway/business.py).
        customer = (await business.customers_in(conn, [account.id])).get(account.id)
        if customer is not None:
            out.append(
                f"  customer:  {customer.name} ({customer.kind}, contract {customer.contract}, INN {customer.inn})"
            )
            out += [
                f"  contact:   {c.name}, phone {c.phone or '-'}, e-mail {c.email or '-'}"
                for c in customer.contacts
            ]

        numbers = sorted(
            (await conn.execute(select(phones.c.phone).where(phones.c.account_id == account.id))).scalars()
        )
        # What each door keeps (gateway/plugins.py): the SMS door lists these phones with its own.
        for module in plugins.privacy_modules():
            report_lines = getattr(module, "report_lines", None)
            if report_lines is not None:
                out += await report_lines(conn, account.id, numbers)

        summary = (
            await conn.execute(
                select(
                    func.count(), func.min(readings.c.received_at), func.max(readings.c.received_at)
                ).where(readings.c.account_id == account.id)
            )
        ).one()
        out += [
            "",
            f"Readings: {summary[0]}, received {_when(summary[1])} to {_when(summary[2])}",
        ]
        by_channel = (
            await conn.execute(
                select(readings.c.channel, readings.c.verdict, func.count())
                .where(readings.c.account_id == account.id)
                .group_by(readings.c.channel, readings.c.verdict)
                .order_by(readings.c.channel, readings.c.verdict)
            )
        ).all()
        for channel, verdict, n in by_channel:
            out.append(f"  {channel}, {verdict}: {n}")

        # Raw messages: those that carried the account's readings, and any from the sources the
        # doors know to be its holder's (the linked chats).
        refs = [
            ref for module in plugins.privacy_modules() for ref in await _sources(module, conn, account.id)
        ]
        of_account = select(readings.c.inbound_id).where(readings.c.account_id == account.id)
        held = (
            await conn.execute(
                select(func.count(), func.min(inbound.c.received_at)).where(
                    or_(inbound.c.id.in_(of_account), inbound.c.source.in_(refs)),
                    inbound.c.payload != "",
                    inbound.c.channel.in_(RESIDENT_PAYLOAD_CHANNELS),
                )
            )
        ).one()
        out += ["", f"Raw messages still held (text, sender): {held[0]}"]
        if held[0]:
            out.append(
                f"  the oldest received {_when(held[1])}, purged after"
                f" {config.privacy.payload_retention_days} days: by {_when(held[1] + retention)}"
            )

        trail = (
            await conn.execute(
                select(audit.c.at, audit.c.actor, audit.c.action, audit.c.reading_id)
                .join(readings, readings.c.id == audit.c.reading_id)
                .where(readings.c.account_id == account.id)
                .order_by(audit.c.at, audit.c.id)
            )
        ).all()
        out += ["", f"Audit records of its readings: {len(trail)}"]
        for row in trail:
            out.append(f"  {_when(row.at)} {row.action} of reading {row.reading_id} by {row.actor}")
    return out
