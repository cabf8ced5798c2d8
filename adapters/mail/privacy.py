"""What the mail door keeps of a resident (`meter_gateway.privacy`, gateway/plugins.py): the
addresses the registry lists for the account (in full: senders are matched against them), and
each message handled, under the keyed hash of its sender, with the text of its answer until the
retention empties it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.mail.tables import REPLY_UNPURGED, mail_messages, sender_key
from gateway.privacy import email_ref
from gateway.store.schema import account_emails


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


async def _emails(conn: AsyncConnection, account_id: int) -> list[str]:
    found = await conn.execute(
        select(account_emails.c.email)
        .where(account_emails.c.account_id == account_id)
        .order_by(account_emails.c.email)
    )
    return list(found.scalars())


async def report_lines(conn: AsyncConnection, account_id: int, phones: list[str]) -> list[str]:
    """`privacy report`: the account's e-mail addresses, each with its messages to the mailbox."""
    emails = await _emails(conn, account_id)
    out = ["", f"E-mail addresses (kept in full: they identify senders): {len(emails)}"]
    for address in emails:
        n, last = (
            await conn.execute(
                select(func.count(), func.max(mail_messages.c.received_at)).where(
                    mail_messages.c.sender_key == sender_key(address)
                )
            )
        ).one()
        out.append(
            f"  {address}: {n} messages handled (sender kept as a keyed hash), last {_when(last)};"
            f" in readings as mail:{email_ref(address)}"
        )
    return out


async def sources(conn: AsyncConnection, account_id: int) -> list[str]:
    """The sources of the raw messages from the account's addresses (`mail:#...`)."""
    return [f"mail:{email_ref(address)}" for address in await _emails(conn, account_id)]


async def purge(conn: AsyncConnection, before: datetime, limit: int) -> int:
    """Empty the answers' texts of at most `limit` messages handled before `before` whose answer
    is settled (the row stays, so the message is still recognised if it is read again)."""
    ids = list(
        (
            await conn.execute(
                select(mail_messages.c.id)
                .where(
                    text(REPLY_UNPURGED),  # written as the partial index is, so the index is used
                    mail_messages.c.received_at < before,
                    mail_messages.c.state.not_in(("claimed", "failed")),
                )
                .order_by(mail_messages.c.received_at)
                .limit(limit)
            )
        ).scalars()
    )
    if ids:
        await conn.execute(update(mail_messages).where(mail_messages.c.id.in_(ids)).values(reply=""))
    return len(ids)
