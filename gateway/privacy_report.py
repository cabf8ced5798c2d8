"""`meter-gateway privacy report ACCOUNT`: everything the gateway keeps about one account.

For the operator answering a data subject's request (152-FZ, art. 14): the registry's data,
phones and linked chats are printed in full, and the report says so. Phones and chat ids kept
elsewhere as keyed hashes are found through the same hash (gateway/privacy.py), so the report
needs the gateway's secret: the configured one or the one kept in the database.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.privacy import chat_ref, phone_hash
from gateway.store.schema import accounts, audit, inbound, meters, phones, readings
from gateway.store.schema_cabinet import signin_attempts, signin_codes, web_sessions
from gateway.store.schema_sms import sms_messages, sms_optouts
from gateway.store.schema_telegram import telegram_link_attempts, telegram_links

HEADER = (
    "Personal data held about account {number}. Printed in full for answering the data subject's "
    "request: hand it to the verified holder only."
)


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


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

        numbers = sorted(
            (await conn.execute(select(phones.c.phone).where(phones.c.account_id == account.id))).scalars()
        )
        out += ["", f"Phones (kept in full: they identify senders and receive reminders): {len(numbers)}"]
        opted = set(
            (
                await conn.execute(
                    select(sms_optouts.c.phone).where(
                        sms_optouts.c.phone.in_([phone_hash(p) for p in numbers])
                    )
                )
            ).scalars()
        )
        for phone in numbers:
            sms = (
                await conn.execute(
                    select(func.count(), func.max(sms_messages.c.received_at)).where(
                        sms_messages.c.sender_key == phone_hash(phone)
                    )
                )
            ).one()
            reminders = "reminders off (СТОП)" if phone_hash(phone) in opted else "reminders on"
            out.append(
                f"  {phone}: {reminders}; SMS reply log: {sms[0]} messages (sender kept as a keyed hash),"
                f" last {_when(sms[1])}"
            )

        chats = (
            await conn.execute(
                select(telegram_links)
                .where(telegram_links.c.account_id == account.id)
                .order_by(telegram_links.c.linked_at)
            )
        ).all()
        out += ["", f"Linked Telegram chats (chat id kept in full: the bot writes to it): {len(chats)}"]
        for c in chats:
            out.append(
                f"  chat {c.chat_id} (user {c.user_id if c.user_id is not None else '-'}), linked"
                f" {_when(c.linked_at)} by {c.method}, reminders {'on' if c.reminders else 'off'},"
                f" in readings as telegram:{chat_ref(c.chat_id)}"
            )
        link_tries = (
            await conn.execute(
                select(func.count(), func.max(telegram_link_attempts.c.at)).where(
                    telegram_link_attempts.c.account == number
                )
            )
        ).one()
        out.append(f"  attempts to link a chat to this account: {link_tries[0]}, last {_when(link_tries[1])}")

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

        # Raw messages: those that carried the account's readings, and any from its linked chats.
        refs = [f"telegram:{chat_ref(c.chat_id)}" for c in chats]
        of_account = select(readings.c.inbound_id).where(readings.c.account_id == account.id)
        held = (
            await conn.execute(
                select(func.count(), func.min(inbound.c.received_at)).where(
                    or_(inbound.c.id.in_(of_account), inbound.c.source.in_(refs)),
                    inbound.c.payload != "",
                    inbound.c.channel.in_(("sms", "telegram", "ivr", "cabinet")),
                )
            )
        ).one()
        out += ["", f"Raw messages still held (text, sender): {held[0]}"]
        if held[0]:
            out.append(
                f"  the oldest received {_when(held[1])}, purged after"
                f" {config.privacy.payload_retention_days} days: by {_when(held[1] + retention)}"
            )

        tries = (
            await conn.execute(
                select(
                    func.count(), func.count().filter(signin_attempts.c.ok), func.max(signin_attempts.c.at)
                ).where(signin_attempts.c.scope == "account", signin_attempts.c.subject == number)
            )
        ).one()
        sessions = (
            await conn.execute(
                select(func.count(), func.count().filter(web_sessions.c.revoked_at.is_(None))).where(
                    web_sessions.c.scope == "account", web_sessions.c.subject == number
                )
            )
        ).one()
        codes = (
            await conn.execute(select(func.count()).where(signin_codes.c.account == number))
        ).scalar_one()
        out += [
            "",
            "Cabinet sign-in records:",
            f"  sign-in attempts: {tries[0]} ({tries[1]} successful), last {_when(tries[2])}",
            f"  sessions: {sessions[0]} ({sessions[1]} not signed out)",
            f"  one-time codes sent (kept as keyed hashes): {codes}",
        ]

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
