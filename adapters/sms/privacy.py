"""What the SMS door keeps of a resident (`meter_gateway.privacy`, gateway/plugins.py): the reply
log and the opt-outs, both under the keyed hash of the phone (gateway/privacy.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.sms.tables import hash_plain_optouts, sms_messages, sms_optouts
from gateway.privacy import phone_hash


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


async def report_lines(conn: AsyncConnection, account_id: int, phones: list[str]) -> list[str]:
    """`privacy report`: the account's registered phones, each with its reminders (on, or off
    after "СТОП") and its messages in the SMS reply log."""
    out = ["", f"Phones (kept in full: they identify senders and receive reminders): {len(phones)}"]
    opted = set(
        (
            await conn.execute(
                select(sms_optouts.c.phone).where(sms_optouts.c.phone.in_([phone_hash(p) for p in phones]))
            )
        ).scalars()
    )
    for phone in phones:
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
    return out


async def prepare(engine: AsyncEngine) -> None:
    """At start-up, once the privacy key is loaded: opt-outs stored in clear become keyed hashes."""
    await hash_plain_optouts(engine)
