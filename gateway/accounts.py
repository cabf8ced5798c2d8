"""Registry queries for the doors: which accounts a phone is registered for, which meters an
account has, which phones are registered for an account, and whether a phone a channel reports
is one of them.

A door that talks with the resident step by step (the telephone menu, a Telegram chat) needs
these before it builds a `Submission` or links a chat; the verification of residents
(gateway/verification.py) checks its second factor with them. They tell nothing about earlier
readings, which must not reach a sender who has not been verified: what a verified resident or
staff member sees is gateway/account_views.py. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.privacy import normalize_phone
from gateway.store.schema import accounts, meters, phones


@dataclass(frozen=True, slots=True)
class MeterSummary:
    """What a resident may be told about one meter of an account: no readings, no history."""

    serial: str
    zones: tuple[str, ...]  # ("T",), ("T1", "T2"), ("T1", "T2", "T3")
    digits: int  # integer digits of the counter
    active: bool


async def accounts_of_phone(engine: AsyncEngine, phone: str) -> list[str]:
    """Account numbers the phone is registered for (any written form of the number), sorted."""
    normal = normalize_phone(phone)
    if len(normal) < 2:
        return []
    query = (
        select(accounts.c.number)
        .join(phones, phones.c.account_id == accounts.c.id)
        .where(phones.c.phone == normal)
        .order_by(accounts.c.number)
    )
    async with engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


async def branches_of_phone(engine: AsyncEngine, phone: str) -> set[str | None]:
    """The branches (registry `branch`, None: the default) of the accounts the phone is
    registered for; empty for a phone registered for none."""
    normal = normalize_phone(phone)
    if len(normal) < 2:
        return set()
    query = (
        select(accounts.c.branch)
        .join(phones, phones.c.account_id == accounts.c.id)
        .where(phones.c.phone == normal)
        .distinct()
    )
    async with engine.connect() as conn:
        return set((await conn.execute(query)).scalars())


async def meters_of_account(engine: AsyncEngine, number: str) -> list[MeterSummary] | None:
    """The account's meters in serial order; None when there is no such account."""
    async with engine.connect() as conn:
        account_id = (
            await conn.execute(select(accounts.c.id).where(accounts.c.number == number))
        ).scalar_one_or_none()
        if account_id is None:
            return None
        rows = (
            await conn.execute(
                select(meters.c.serial, meters.c.zones, meters.c.digits, meters.c.active)
                .where(meters.c.account_id == account_id)
                .order_by(meters.c.serial)
            )
        ).all()
    return [
        MeterSummary(serial=r.serial, zones=tuple(r.zones.split(";")), digits=r.digits, active=bool(r.active))
        for r in rows
    ]


async def phones_of_account(engine: AsyncEngine, number: str) -> list[str]:
    """The phones registered for an account (E.164), empty when there is no such account."""
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    select(phones.c.phone)
                    .join(accounts, accounts.c.id == phones.c.account_id)
                    .where(accounts.c.number == number)
                )
            ).scalars()
        )


def phone_matches(registered: list[str], phone: str) -> bool:
    """A phone as a channel reports it ('79161234567', '+7 916 ...') is one of the registered ones."""
    wanted = normalize_phone(phone)
    return len(wanted) > 5 and any(normalize_phone(p) == wanted for p in registered)
