"""The reminder policy's store: the log of reminders sent, and which accounts still owe a reading.

* `reminder_log`: one row per reminder (channel, recipient, period, kind), written before it is
  sent, so that no reminder ever goes out twice, whichever process sends it. Every notifier
  channel (SMS, Telegram) shares it.
* The queries of the reminder job (gateway/reminders.py): accounts without a reading of a
  period, claiming a reminder, marking it sent or giving the claim back, and the registered
  phones of accounts (whom a phone notifier such as SMS reminds).

The other core tables (`readings`, `phones`, `meters`, `accounts`) are only read here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

import orjson
from sqlalchemy import (
    Column,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    exists,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.expression import ColumnElement, Exists

from gateway.store.schema import Id, UtcDateTime, accounts, metadata, meters, phones, readings

reminder_log = Table(
    "reminder_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("channel", String(16), nullable=False),  # "sms", "telegram"
    Column("recipient", String(64), nullable=False),  # phone (E.164) or chat id
    Column("period", String(7), nullable=False),  # "YYYY-MM"
    Column("kind", String(16), nullable=False),  # "window_start", "last_day"
    Column("accounts", Text, nullable=False),  # JSON list of the account numbers reminded of
    Column("claimed_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime(), nullable=True),  # None while sending (or if the process died)
    UniqueConstraint("channel", "recipient", "period", "kind", name="uq_reminder_log_once"),
)


def _missing_reading(period: str) -> Exists:
    """SQL condition: the account has an active meter with no reading of `period` that counts.

    A reading that is accepted or held for the back office counts as submitted, from whatever
    channel or device; a rejected one does not, nor one only awaiting its sender's confirmation
    (it may never be confirmed, so the period's reminders still go).
    """
    counted = exists().where(
        readings.c.meter_id == meters.c.id,
        readings.c.period == period,
        readings.c.verdict.not_in(("rejected", "needs_confirmation")),
    )
    return exists().where(meters.c.account_id == accounts.c.id, meters.c.active.is_(True), ~counted)


async def accounts_without_reading(
    conn: AsyncConnection, period: str, among: ColumnElement[bool] | None = None
) -> dict[int, str]:
    """Accounts (id -> number) with an active meter that has no reading for `period` yet; `among`:
    an SQL condition on `accounts` they must meet too (a branch's, gateway/branches.py)."""
    query = select(accounts.c.id, accounts.c.number).where(_missing_reading(period))
    if among is not None:
        query = query.where(among)
    return {r.id: r.number for r in (await conn.execute(query)).all()}


async def still_without_reading(conn: AsyncConnection, period: str, account_ids: Iterable[int]) -> set[int]:
    """Which of these accounts still lack a reading for `period` (checked just before sending)."""
    ids = list(account_ids)
    if not ids:
        return set()
    query = select(accounts.c.id).where(accounts.c.id.in_(ids), _missing_reading(period))
    return set((await conn.execute(query)).scalars())


async def phones_of_accounts(conn: AsyncConnection, account_ids: Collection[int]) -> dict[str, list[int]]:
    """Registered phones (normalised) of these accounts -> the accounts each one belongs to."""
    out: dict[str, list[int]] = {}
    ordered = sorted(account_ids)
    for i in range(0, len(ordered), 1000):
        chunk = ordered[i : i + 1000]
        rows = await conn.execute(
            select(phones.c.phone, phones.c.account_id).where(phones.c.account_id.in_(chunk))
        )
        for phone, account_id in rows.all():
            out.setdefault(phone, []).append(account_id)
    return out


async def reminded(conn: AsyncConnection, channel: str, period: str, kind: str) -> set[str]:
    """Recipients this reminder was already claimed for (sent, or being sent)."""
    rows = await conn.execute(
        select(reminder_log.c.recipient).where(
            reminder_log.c.channel == channel,
            reminder_log.c.period == period,
            reminder_log.c.kind == kind,
        )
    )
    return set(rows.scalars())


async def claim_reminder(
    engine: AsyncEngine,
    *,
    channel: str,
    recipient: str,
    period: str,
    kind: str,
    account_ids: Collection[int],
    now: datetime,
) -> list[str] | None:
    """Take the right to send one reminder; returns the account numbers still to remind of.

    None when another process (or an earlier run) already claimed it, or when every account
    got its reading in the meantime. The claim is committed before anything is sent: a crash
    while sending loses that reminder rather than ever sending it twice.
    """
    try:
        async with engine.begin() as conn:
            still = await still_without_reading(conn, period, account_ids)
            if not still:
                return None
            numbers = sorted(
                (
                    await conn.execute(select(accounts.c.number).where(accounts.c.id.in_(sorted(still))))
                ).scalars()
            )
            await conn.execute(
                insert(reminder_log).values(
                    channel=channel,
                    recipient=recipient,
                    period=period,
                    kind=kind,
                    accounts=orjson.dumps(numbers).decode(),
                    claimed_at=now,
                )
            )
            return numbers
    except IntegrityError:
        return None


async def reminder_sent(
    engine: AsyncEngine, *, channel: str, recipient: str, period: str, kind: str, now: datetime
) -> None:
    """Mark a claimed reminder as handed to the channel."""
    async with engine.begin() as conn:
        await conn.execute(
            update(reminder_log)
            .where(
                reminder_log.c.channel == channel,
                reminder_log.c.recipient == recipient,
                reminder_log.c.period == period,
                reminder_log.c.kind == kind,
            )
            .values(sent_at=now)
        )


async def release_reminder(
    engine: AsyncEngine, *, channel: str, recipient: str, period: str, kind: str
) -> None:
    """Give up a claim whose sending failed for sure (the channel refused it): a later run retries."""
    async with engine.begin() as conn:
        await conn.execute(
            delete(reminder_log).where(
                and_(
                    reminder_log.c.channel == channel,
                    reminder_log.c.recipient == recipient,
                    reminder_log.c.period == period,
                    reminder_log.c.kind == kind,
                    reminder_log.c.sent_at.is_(None),
                )
            )
        )
