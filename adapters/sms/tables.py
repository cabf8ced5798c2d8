"""Tables of the SMS door, in the shared MetaData, and the queries on them.

* `sms_messages`: every inbound SMS the gateway answered (or chose not to), keyed by the route
  and the route's own message id (Kannel's %I, Twilio's MessageSid). A redelivered message gets
  the reply stored here, byte for byte, and costs nothing against the sender's hourly budget.
  The same rows are the reply budget itself: replies sent to a sender in the last hour are
  counted here, so the limit holds across restarts and across gateway processes on one
  database. Senders are stored as a keyed hash (HMAC-SHA256, gateway/privacy.py) of the
  normalised phone, never in clear.
* `sms_optouts`: phones that answered "стоп" (as keyed hashes); they get no reminders.

The reminder log and the reminder policy's queries are the core's (gateway/store/schema_reminders.py).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.privacy import phone_hash
from gateway.store.schema import Id, UtcDateTime, metadata, phones

sms_messages = Table(
    "sms_messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("route", String(16), nullable=False),  # "kannel", "twilio"
    Column("message_id", String(128), nullable=False),  # the route's id of the inbound SMS
    Column("sender_key", String(64), nullable=False),  # keyed hash of the normalised phone
    Column("received_at", UtcDateTime(), nullable=False),
    Column("kind", String(16), nullable=False),  # reading, help, confirm, stop, correct
    Column("receipt", Id, nullable=True),  # the core's inbound id of the reading it carried
    Column("status", String(24), nullable=True),  # the verdict's status when it was answered
    Column("reply", Text, nullable=False),  # what was answered ("" when withheld)
    Column("withheld", Boolean, nullable=False, default=False),  # over the hourly reply budget
    UniqueConstraint("route", "message_id", name="uq_sms_messages_route_message"),
    Index("ix_sms_messages_sender", "sender_key", "received_at"),
)

sms_optouts = Table(
    "sms_optouts",
    metadata,
    Column("phone", String(64), primary_key=True),  # keyed hash of the normalised phone
    Column("at", UtcDateTime(), nullable=False),
)

HOUR = timedelta(hours=1)


def sender_key(phone: str) -> str:
    """The stored identity of a sender: the keyed hash of the normalised phone, hex."""
    return phone_hash(phone)


# -- inbound SMS ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredReply:
    """What a message was answered with; replayed to a redelivery of it."""

    reply: str
    withheld: bool
    receipt: int | None
    status: str | None
    replayed: bool = False  # answered before: this is a redelivery


async def stored_reply(engine: AsyncEngine, route: str, message_id: str) -> StoredReply | None:
    """The reply already given to this message of this route, if it was answered before."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    sms_messages.c.reply,
                    sms_messages.c.withheld,
                    sms_messages.c.receipt,
                    sms_messages.c.status,
                ).where(sms_messages.c.route == route, sms_messages.c.message_id == message_id)
            )
        ).first()
    return None if row is None else StoredReply(row.reply, bool(row.withheld), row.receipt, row.status)


@dataclass(frozen=True, slots=True)
class ReplyToStore:
    """One answered message, before it is stored and the reply budget is applied."""

    route: str
    message_id: str
    phone: str
    now: datetime
    kind: str
    reply: str
    receipt: int | None = None
    status: str | None = None


async def record_replies(
    engine: AsyncEngine, items: Sequence[ReplyToStore], replies_per_hour: int
) -> list[StoredReply]:
    """Store the answers to several messages in one transaction; returns what to send for each.

    A reply is withheld (stored with `withheld`, "" returned) when its sender already got
    `replies_per_hour` replies in the hour before it. A message stored before (a redelivery,
    or the same message twice in `items`) gets its first answer. One commit serves the whole
    batch, so the reply log costs one durable write per group of messages, not per message.
    """
    for attempt in range(3):
        try:
            async with engine.begin() as conn:
                return await _record_in(conn, items, replies_per_hour)
        except IntegrityError:  # another process stored one of these messages meanwhile
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _record_in(
    conn: AsyncConnection, items: Sequence[ReplyToStore], replies_per_hour: int
) -> list[StoredReply]:
    keys = [sender_key(item.phone) for item in items]
    senders = sorted(set(keys))
    if conn.dialect.name == "postgresql":
        # Serialise count-then-insert per sender across processes, always in the same order
        # (SQLite's BEGIN IMMEDIATE already serialises every writer).
        for key in senders:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(key[:15], 16)})
    ids = {(item.route, item.message_id[:128]) for item in items}
    known: dict[tuple[str, str], StoredReply] = {}
    for route in {r for r, _ in ids}:
        rows = await conn.execute(
            select(
                sms_messages.c.message_id,
                sms_messages.c.reply,
                sms_messages.c.withheld,
                sms_messages.c.receipt,
                sms_messages.c.status,
            ).where(
                sms_messages.c.route == route,
                sms_messages.c.message_id.in_(sorted(m for r, m in ids if r == route)),
            )
        )
        for row in rows.all():
            known[(route, row.message_id)] = StoredReply(
                row.reply, bool(row.withheld), row.receipt, row.status
            )
    # Replies sent in the hour before the earliest message of the batch: counting from the
    # earliest can only over-count, so the limit is never exceeded.
    since = min(item.now for item in items) - HOUR
    sent: dict[str, int] = dict.fromkeys(senders, 0)
    counts = await conn.execute(
        select(sms_messages.c.sender_key, func.count())
        .where(
            sms_messages.c.sender_key.in_(senders),
            sms_messages.c.received_at > since,
            sms_messages.c.reply != "",
        )
        .group_by(sms_messages.c.sender_key)
    )
    sent.update({key: int(n) for key, n in counts.all()})
    out: list[StoredReply] = []
    new_rows: list[dict[str, object]] = []
    for item, key in zip(items, keys, strict=True):
        ident = (item.route, item.message_id[:128])
        if ident in known:
            first = known[ident]
            out.append(StoredReply(first.reply, first.withheld, first.receipt, first.status, replayed=True))
            continue
        withheld = bool(item.reply) and sent[key] >= replies_per_hour
        if item.reply and not withheld:
            sent[key] += 1
        stored = StoredReply("" if withheld else item.reply, withheld, item.receipt, item.status)
        known[ident] = stored
        out.append(stored)
        new_rows.append(
            {
                "route": item.route,
                "message_id": ident[1],
                "sender_key": key,
                "received_at": item.now,
                "kind": item.kind,
                "receipt": item.receipt,
                "status": item.status,
                "reply": stored.reply,
                "withheld": withheld,
            }
        )
    if new_rows:
        await conn.execute(insert(sms_messages), new_rows)
    return out


async def receipt_awaiting_yes(engine: AsyncEngine, phone: str) -> int | None:
    """The receipt of this sender's latest SMS reading that was answered "needs confirmation"."""
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(sms_messages.c.receipt)
                .where(
                    sms_messages.c.sender_key == sender_key(phone),
                    sms_messages.c.status == "needs_confirmation",
                    sms_messages.c.receipt.is_not(None),
                )
                .order_by(sms_messages.c.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()


async def mark_answered(engine: AsyncEngine, receipt: int, status: str) -> None:
    """A held reading was decided (confirmed by its sender): "ДА" no longer refers to it."""
    async with engine.begin() as conn:
        await conn.execute(
            update(sms_messages)
            .where(sms_messages.c.receipt == receipt, sms_messages.c.status == "needs_confirmation")
            .values(status=status)
        )


async def opt_out(engine: AsyncEngine, phone: str, now: datetime) -> None:
    """Stop reminders to this phone (idempotent)."""
    number = phone_hash(phone)
    async with engine.begin() as conn:
        found = (await conn.execute(select(sms_optouts.c.phone).where(sms_optouts.c.phone == number))).first()
        if found is None:
            await conn.execute(insert(sms_optouts).values(phone=number, at=now))


async def opt_in(engine: AsyncEngine, phone: str) -> None:
    """Reminders to this phone again, after a "стоп" (idempotent)."""
    async with engine.begin() as conn:
        await conn.execute(delete(sms_optouts).where(sms_optouts.c.phone == phone_hash(phone)))


async def opted_out(conn: AsyncConnection, numbers: Collection[str]) -> set[str]:
    """Which of these normalised phones asked for no reminders."""
    if not numbers:
        return set()
    by_hash = {phone_hash(n): n for n in numbers}
    found: set[str] = set()
    ordered = sorted(by_hash)
    for i in range(0, len(ordered), 1000):
        chunk = ordered[i : i + 1000]
        found.update(
            by_hash[h]
            for h in (
                await conn.execute(select(sms_optouts.c.phone).where(sms_optouts.c.phone.in_(chunk)))
            ).scalars()
        )
    return found


async def phone_of_receipt(conn: AsyncConnection, account_id: int, receipt: int) -> str | None:
    """The registered phone of the account the SMS reading `receipt` came from (the reply log
    keeps only a keyed hash of it); None for a sender not registered for the account."""
    key = (
        await conn.execute(
            select(func.min(sms_messages.c.sender_key)).where(sms_messages.c.receipt == receipt)
        )
    ).scalar_one_or_none()
    if key is None:
        return None
    registered = await conn.execute(select(phones.c.phone).where(phones.c.account_id == account_id))
    return next((p for p in registered.scalars() if sender_key(p) == key), None)


async def hash_plain_optouts(engine: AsyncEngine) -> int:
    """Opt-outs stored before migration 0012 held the phone itself: keep its keyed hash instead.

    Run at start-up once the key is loaded (the migration cannot: it has no key); a no-op later.
    """
    async with engine.begin() as conn:
        plain = (await conn.execute(select(sms_optouts).where(sms_optouts.c.phone.like("+%")))).all()
        for row in plain:
            key = phone_hash(row.phone)
            await conn.execute(delete(sms_optouts).where(sms_optouts.c.phone == row.phone))
            exists_ = (
                await conn.execute(select(sms_optouts.c.phone).where(sms_optouts.c.phone == key))
            ).first()
            if exists_ is None:
                await conn.execute(insert(sms_optouts).values(phone=key, at=row.at))
    return len(plain)
