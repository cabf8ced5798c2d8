"""The mail door's table, in the shared MetaData, and the queries on it.

`mail_messages` holds one row per message of the readings mailbox the door has handled, keyed by
the message's key (its Message-ID, or a hash of the message when it has none: `message.MailIn.key`):

* a message read again (the mailbox flag was not set before a crash, another gateway process
  read it at the same moment, the resident sent the same message twice) finds its row and is
  neither decided nor answered again; the row is inserted before the answer is sent, and only
  the process whose insert succeeded sends it (a claim, as the notices outbox claims a notice);
* the answer's own Message-ID (`reply_id`), so a resident's «ДА» in reply to it confirms exactly
  the reading that answer asked about;
* the reply budget: answers sent to a sender in the last hour are counted here, so a forged
  sender cannot turn the gateway into a mail bomb against someone else's address;
* what became of the answer (`state`): `none` (never answered: automatic mail, bounces, loops),
  `withheld` (over the budget), `claimed` (being sent), `sent`, `failed` (surely not sent: tried
  again up to `MAX_ATTEMPTS` times), `refused` (the SMTP server refused it for good), `unsure`
  (the connection broke after the message was handed over: not sent again, so nobody gets two).

Senders are kept as the keyed hash of the lower-case address (gateway/privacy.py), never in
clear; the answer's text is emptied with the other raw messages after the retention (privacy.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, Index, Integer, String, Table, Text, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.privacy import keyed_hash, normalize_email
from gateway.store.schema import Id, UtcDateTime, metadata

MAX_ATTEMPTS = 5  # answers that surely did not go are tried this often, then given up
ANSWERED = ("claimed", "sent", "unsure")  # what counts against the hourly reply budget

mail_messages = Table(
    "mail_messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("message_key", String(128), nullable=False, unique=True),  # Message-ID or sha256:<hex>
    Column("sender_key", String(64), nullable=False),  # keyed hash of the lower-case From address
    Column("received_at", UtcDateTime(), nullable=False),
    Column("kind", String(16), nullable=False),  # reading, confirm, help, automatic
    Column("receipt", Id, nullable=True),  # the core's inbound id of the reading it carried
    Column("status", String(24), nullable=True),  # the verdict's status when it was answered
    Column("reply_id", String(255), nullable=True),  # the answer's Message-ID
    Column("reply", Text, nullable=False),  # the answer's text ("" when none, or purged)
    Column("state", String(16), nullable=False),  # see the module's opening
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),  # the last failure to send
    Index("ix_mail_messages_sender", "sender_key", "received_at"),
    Index("ix_mail_messages_reply_id", "reply_id"),
)
# Answers not emptied yet (privacy.py `purge`): a partial index, so the purge reads only what is left.
REPLY_UNPURGED = "reply <> ''"
Index(
    "ix_mail_messages_unpurged",
    mail_messages.c.received_at,
    sqlite_where=text(REPLY_UNPURGED),
    postgresql_where=text(REPLY_UNPURGED),
)


def sender_key(address: str) -> str:
    """The stored identity of a sender: the keyed hash of the lower-case address, hex."""
    return keyed_hash(f"mail:{normalize_email(address)}")


@dataclass(frozen=True, slots=True)
class Handled:
    """A message's row: what it was and what became of its answer."""

    id: int
    kind: str
    receipt: int | None
    status: str | None
    reply_id: str | None
    reply: str
    state: str
    attempts: int


_COLUMNS = (
    mail_messages.c.id,
    mail_messages.c.kind,
    mail_messages.c.receipt,
    mail_messages.c.status,
    mail_messages.c.reply_id,
    mail_messages.c.reply,
    mail_messages.c.state,
    mail_messages.c.attempts,
)


async def handled(engine: AsyncEngine, key: str) -> Handled | None:
    """The row of a message handled before, if any."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(*_COLUMNS).where(mail_messages.c.message_key == key))).first()
    return None if row is None else Handled(*row)


@dataclass(frozen=True, slots=True)
class ToRecord:
    """A message about to be answered (or not), before its row exists."""

    key: str
    sender: str  # the From address ("" when none)
    received_at: datetime
    kind: str
    reply: str  # "" : nothing to answer
    reply_id: str | None = None
    receipt: int | None = None
    status: str | None = None


async def claim(engine: AsyncEngine, item: ToRecord, replies_per_hour: int) -> Handled | None:
    """Insert the message's row: `claimed` when its answer is to be sent now, `withheld` when its
    sender already had `replies_per_hour` answers in the hour before, `none` when there is nothing
    to answer. None when the row exists already (another process, or an earlier read, has it)."""
    key = sender_key(item.sender)
    try:
        async with engine.begin() as conn:
            state = "none"
            if item.reply:
                sent = (
                    await conn.execute(
                        select(func.count()).where(
                            mail_messages.c.sender_key == key,
                            mail_messages.c.received_at > item.received_at - timedelta(hours=1),
                            mail_messages.c.state.in_(ANSWERED),
                        )
                    )
                ).scalar_one()
                state = "withheld" if sent >= replies_per_hour else "claimed"
            values = {
                "message_key": item.key,
                "sender_key": key,
                "received_at": item.received_at,
                "kind": item.kind,
                "receipt": item.receipt,
                "status": item.status,
                "reply_id": item.reply_id,
                "reply": item.reply,
                "state": state,
                "attempts": 0,
            }
            row_id = (await conn.execute(insert(mail_messages).values(values))).inserted_primary_key
    except IntegrityError:
        return None
    assert row_id is not None
    return Handled(int(row_id[0]), item.kind, item.receipt, item.status, item.reply_id, item.reply, state, 0)


async def settle(engine: AsyncEngine, row_id: int, state: str, error: str | None = None) -> None:
    """Record what became of an answer after a try to send it."""
    async with engine.begin() as conn:
        await conn.execute(
            update(mail_messages)
            .where(mail_messages.c.id == row_id)
            .values(state=state, error=error, attempts=mail_messages.c.attempts + 1)
        )


async def reclaim(engine: AsyncEngine, row_id: int) -> bool:
    """Take an answer that surely did not go for another try; False when another process took it."""
    async with engine.begin() as conn:
        done = await conn.execute(
            update(mail_messages)
            .where(mail_messages.c.id == row_id, mail_messages.c.state == "failed")
            .values(state="claimed")
        )
    return done.rowcount == 1


async def awaiting_confirmation(engine: AsyncEngine, sender: str, replied_to: Iterable[str]) -> int | None:
    """The receipt a sender's «ДА» confirms: the reading of the answer it replies to (its
    In-Reply-To or References), else the sender's latest reading answered "needs confirmation"."""
    key = sender_key(sender)
    asked = (
        mail_messages.c.sender_key == key,
        mail_messages.c.status == "needs_confirmation",
        mail_messages.c.receipt.is_not(None),
    )
    ids = [i for i in replied_to if i][:50]
    async with engine.connect() as conn:
        if ids:
            found = (
                await conn.execute(
                    select(mail_messages.c.receipt).where(*asked, mail_messages.c.reply_id.in_(ids)).limit(1)
                )
            ).scalar_one_or_none()
            if found is not None:
                return int(found)
        latest = (
            await conn.execute(
                select(mail_messages.c.receipt).where(*asked).order_by(mail_messages.c.id.desc()).limit(1)
            )
        ).scalar_one_or_none()
    return None if latest is None else int(latest)


async def mark_decided(engine: AsyncEngine, receipt: int, status: str) -> None:
    """A held reading was decided (confirmed by its sender): «ДА» no longer refers to it."""
    async with engine.begin() as conn:
        await conn.execute(
            update(mail_messages)
            .where(mail_messages.c.receipt == receipt, mail_messages.c.status == "needs_confirmation")
            .values(status=status)
        )
