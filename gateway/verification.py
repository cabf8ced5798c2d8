"""Verification of residents and staff: sign-in throttles and one-time codes, for every door
(the web cabinet, the operators' desk, Telegram account linking).

- A throttle is one row per (scope, subject, address) in `signin_throttle`. `reserve` counts an
  attempt BEFORE its secret is checked, in one conditional INSERT ... ON CONFLICT DO UPDATE ...
  RETURNING, so that any number of concurrent attempts, in any number of gateway processes on
  the database, get at most `Rule.free` checked at once. Past that, every further attempt waits
  2, 4, 8 ... seconds (at most `Rule.cap`) after the previous one. A success clears the row.
- Throttles are per account AND client address, plus one per address over all accounts: a
  stranger's failures from their address never slow the holder down at theirs. There is no
  lockout of an account as such.
- A one-time code is 6 digits, kept only as an HMAC-SHA256 under a key generated once and kept
  in `web_secrets`; one live code per account (a new one voids the old), valid `minutes`,
  used once, voided after `attempts` wrong entries (each entry is counted before it is compared).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import case, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.schema_cabinet import signin_codes, signin_throttle, web_secrets

log = logging.getLogger(__name__)

ANY = "*"  # the subject or address of a throttle over all of them
CODE_DIGITS = 6
CODE_KEY_NAME = "signin_code_key"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- throttles -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """`free` attempts at once; then waits doubling from `base` up to `cap` seconds; a row quiet
    for `forget` seconds starts over."""

    free: int
    cap: int
    base: int = 2
    forget: int = 0  # 0: four times the cap

    @property
    def quiet(self) -> int:
        return self.forget or 4 * self.cap


@dataclass(frozen=True, slots=True)
class Key:
    scope: str  # "account", "operator", "telegram", "code_send"
    subject: str  # account number or login, ANY for all
    address: str  # client address or "chat:<id>", ANY for all

    def bounded(self) -> Key:
        subject = _CONTROL.sub("", self.subject)[:64]  # PostgreSQL's text holds no NUL
        return Key(self.scope[:16], subject or "-", _CONTROL.sub("", self.address)[:80] or "-")


def _upsert(engine: AsyncEngine) -> Any:
    return sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert


def _seconds(now: datetime) -> int:
    return int(now.timestamp())


async def reserve(engine: AsyncEngine, key: Key, rule: Rule, now: datetime) -> int:
    """Count one attempt for `key` before its secret is checked: 0 when it may be checked, else
    the seconds to wait (and the attempt is not counted)."""
    key = key.bounded()
    t = signin_throttle
    ts = _seconds(now)
    first_delay = rule.base if rule.free <= 1 else 0
    fresh = t.c.last_at <= ts - rule.quiet  # quiet long enough: start over
    attempts = case((fresh, 1), else_=t.c.attempts + 1)
    doubled = case((fresh, 0), else_=t.c.delay) * 2
    grown = case((doubled < rule.base, rule.base), (doubled > rule.cap, rule.cap), else_=doubled)
    delay = case((attempts >= rule.free, grown), else_=0)
    stmt = _upsert(engine)(t).values(
        scope=key.scope,
        subject=key.subject,
        address=key.address,
        attempts=1,
        delay=first_delay,
        next_at=ts + first_delay,
        last_at=ts,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.scope, t.c.subject, t.c.address],
        set_={"attempts": attempts, "delay": delay, "next_at": ts + delay, "last_at": ts},
        where=(t.c.next_at <= ts) | fresh,
    ).returning(t.c.attempts)
    async with engine.begin() as conn:
        taken = (await conn.execute(stmt)).first()
        if taken is not None:
            return 0
        next_at = (
            await conn.execute(
                select(t.c.next_at).where(
                    t.c.scope == key.scope, t.c.subject == key.subject, t.c.address == key.address
                )
            )
        ).scalar_one_or_none()
    return max(1, int(next_at or ts) - ts)


async def reserve_all(engine: AsyncEngine, keys: Sequence[tuple[Key, Rule]], now: datetime) -> int:
    """Reserve each in turn, widest first; the first refusal stops (its wait is returned)."""
    for key, rule in keys:
        wait = await reserve(engine, key, rule, now)
        if wait:
            return wait
    return 0


async def clear(engine: AsyncEngine, key: Key) -> None:
    """A success: this account (or login) from this address starts over."""
    key = key.bounded()
    t = signin_throttle
    async with engine.begin() as conn:
        await conn.execute(
            update(t)
            .where(t.c.scope == key.scope, t.c.subject == key.subject, t.c.address == key.address)
            .values(attempts=0, delay=0, next_at=0)
        )


def wait_text(seconds: int) -> str:
    """'через 8 секунд' / 'через 15 минут' for the pages and the bot."""
    if seconds < 60:
        return f"через {seconds} {_plural(seconds, 'секунду', 'секунды', 'секунд')}"
    minutes = (seconds + 59) // 60
    return f"через {minutes} {_plural(minutes, 'минуту', 'минуты', 'минут')}"


def _plural(n: int, one: str, few: str, many: str) -> str:
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


# -- one-time codes --------------------------------------------------------------------------


class CodeSender(Protocol):
    """A way to get a code to the holder of an account (SMS, Telegram, the demo's log)."""

    channel: str

    async def send_code(self, engine: AsyncEngine, account: str, text: str) -> bool:
        """Send `text` to the account's registered destinations; True if any took it."""
        ...


async def code_key(engine: AsyncEngine, now: datetime) -> bytes:
    """The key of the codes' HMAC: generated once, kept in `web_secrets`, shared by all processes."""
    query = select(web_secrets.c.value).where(web_secrets.c.name == CODE_KEY_NAME)
    async with engine.connect() as conn:
        found = (await conn.execute(query)).scalar_one_or_none()
    if found is not None:
        return bytes.fromhex(str(found))
    key = secrets.token_bytes(32)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(web_secrets).values(name=CODE_KEY_NAME, value=key.hex(), created_at=now)
            )
        return key
    except IntegrityError:  # another process made it first: use theirs
        async with engine.connect() as conn:
            return bytes.fromhex(str((await conn.execute(query)).scalar_one()))


def code_hash(key: bytes, account: str, code: str) -> str:
    return hmac.new(key, f"{account}:{code}".encode(), hashlib.sha256).hexdigest()


async def issue_code(
    engine: AsyncEngine, key: bytes, account: str, now: datetime, minutes: int, sent_via: str
) -> str:
    """A new code for the account; any older live code is voided in the same transaction."""
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    c = signin_codes.c
    async with engine.begin() as conn:
        await conn.execute(
            update(signin_codes).where(c.account == account, c.used_at.is_(None)).values(used_at=now)
        )
        await conn.execute(
            insert(signin_codes).values(
                account=account,
                code_hash=code_hash(key, account, code),
                created_at=now,
                expires_at=now + timedelta(minutes=minutes),
                attempts=0,
                sent_via=sent_via[:64],
            )
        )
    return code


async def check_code(
    engine: AsyncEngine, key: bytes, account: str, code: str, now: datetime, max_attempts: int
) -> bool:
    """Is `code` the account's live code? The entry is counted before the comparison, and a
    right code is spent by the same statement that finds it unused: it signs in once."""
    c = signin_codes.c
    async with engine.begin() as conn:
        live = (
            await conn.execute(
                select(c.id)
                .where(c.account == account, c.used_at.is_(None), c.expires_at > now)
                .order_by(c.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if live is None:
            return False
        counted = (
            await conn.execute(
                update(signin_codes)
                .where(c.id == live, c.used_at.is_(None), c.attempts < max_attempts)
                .values(attempts=c.attempts + 1)
                .returning(c.code_hash)
            )
        ).first()
    if counted is None:
        return False
    if not (
        len(code) == CODE_DIGITS and hmac.compare_digest(counted.code_hash, code_hash(key, account, code))
    ):
        return False
    async with engine.begin() as conn:
        spent = await conn.execute(
            update(signin_codes).where(c.id == live, c.used_at.is_(None)).values(used_at=now)
        )
    return spent.rowcount == 1


def code_text(code: str, minutes: int) -> str:
    return (
        f"Код входа в личный кабинет: {code}. Действует {minutes} мин. "
        "Никому его не сообщайте, даже сотрудникам."
    )
