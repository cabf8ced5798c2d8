"""What the Telegram door keeps of a resident (`meter_gateway.privacy`, gateway/plugins.py): the
chats linked to an account (chat id in full: the bot writes to it), the attempts to link one, and
every update received, whose JSON, replies and chat id are emptied after the retention."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.telegram.tables import (
    UPDATES_UNPURGED,
    telegram_link_attempts,
    telegram_links,
    telegram_updates,
)
from gateway.privacy import chat_ref
from gateway.store.schema import accounts


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


async def _chats(conn: AsyncConnection, account_id: int) -> list[int]:
    found = await conn.execute(
        select(telegram_links.c.chat_id)
        .where(telegram_links.c.account_id == account_id)
        .order_by(telegram_links.c.linked_at)
    )
    return [int(c) for c in found.scalars()]


async def report_lines(conn: AsyncConnection, account_id: int, phones: list[str]) -> list[str]:
    """`privacy report`: the chats linked to the account and the attempts to link one."""
    chats = (
        await conn.execute(
            select(telegram_links)
            .where(telegram_links.c.account_id == account_id)
            .order_by(telegram_links.c.linked_at)
        )
    ).all()
    out = ["", f"Linked Telegram chats (chat id kept in full: the bot writes to it): {len(chats)}"]
    for c in chats:
        out.append(
            f"  chat {c.chat_id} (user {c.user_id if c.user_id is not None else '-'}), linked"
            f" {_when(c.linked_at)} by {c.method}, reminders {'on' if c.reminders else 'off'},"
            f" in readings as telegram:{chat_ref(c.chat_id)}"
        )
    number = select(accounts.c.number).where(accounts.c.id == account_id).scalar_subquery()
    link_tries = (
        await conn.execute(
            select(func.count(), func.max(telegram_link_attempts.c.at)).where(
                telegram_link_attempts.c.account == number
            )
        )
    ).one()
    out.append(f"  attempts to link a chat to this account: {link_tries[0]}, last {_when(link_tries[1])}")
    return out


async def sources(conn: AsyncConnection, account_id: int) -> list[str]:
    """The sources of the raw messages from the account's linked chats (`telegram:#...`)."""
    return [f"telegram:{chat_ref(chat_id)}" for chat_id in await _chats(conn, account_id)]


async def purge(conn: AsyncConnection, before: datetime, limit: int) -> int:
    """Empty the JSON, the replies and the chat id of at most `limit` finished updates received
    before `before` (their update_id stays, so a redelivery is still recognised)."""
    t = telegram_updates
    keys = (
        await conn.execute(
            select(t.c.bot_id, t.c.update_id)
            .where(
                text(UPDATES_UNPURGED),  # written as the partial index is, so the index is used
                t.c.received_at < before,
                t.c.status.in_(("done", "failed")),  # one being handled keeps what it needs
            )
            .order_by(t.c.received_at)
            .limit(limit)
        )
    ).all()
    if keys:
        await conn.execute(
            update(t)
            .where(t.c.bot_id == bindparam("b"), t.c.update_id == bindparam("u"))
            .values(payload="", replies=None, chat_id=None, error=None),
            [{"b": b, "u": u} for b, u in keys],
        )
    return len(keys)
