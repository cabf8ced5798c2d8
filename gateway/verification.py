"""Verification of residents and staff, the one for every door: throttles, one-time codes and
the residents' factors (the web cabinet's sign-in, Telegram account linking, the operators' desk).

- `Verifier` is what a door uses to let a resident prove they hold an account: `send_code` (or
  `send_code_later`) issues a code and hands it to the code senders the door allows (SMS to the
  registered phones, linked Telegram chats, the demo's log: `host.notifiers`, gateway/notify.py), then
  `check_code`, `check_phone` (a phone the channel itself vouches for, e.g. Telegram's shared
  contact) or `check_digits` (the last 4 digits of a registered phone, only with
  `[verification] phone_digits = true`). Each check reserves the door's throttles first and
  clears its pair on success, so every door counts and limits the same way. Its policy is the
  `[verification]` section; the door brings only its throttles and its `Purpose`.

- A throttle is one row per (scope, subject, address) in `signin_throttle`. `reserve` counts an
  attempt BEFORE its secret is checked, in one conditional INSERT ... ON CONFLICT DO UPDATE ...
  RETURNING, so that any number of concurrent attempts, in any number of gateway processes on
  the database, get at most `Rule.free` checked at once. Past that, every further attempt waits
  2, 4, 8 ... seconds (at most `Rule.cap`) after the previous one. A success clears the row.
- Throttles are per account AND client address, plus one per address over all accounts: a
  stranger's failures from their address never slow the holder down at theirs. There is no
  lockout of an account as such.
- A one-time code is 6 digits, kept only as an HMAC-SHA256 under a key generated once and kept
  in `web_secrets`; one live code per account and purpose (a new one voids the old), valid
  `code_minutes`, used once, voided after `code_attempts` wrong entries (each entry is counted
  before it is compared, in one statement, so concurrent guesses from any number of clients get
  at most that many compared). A code opens only the door (`Purpose`) it was issued for.
- A business customer (gateway/business.py) is never verified by its account: every check here
  that starts from an account number refuses one as if it were unknown. Its contact persons get
  their codes on their own phone instead (`send_code_to_contact`, `check_contact_code`), the code
  bound to the contract's account and that contact.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import case, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounts import phone_matches, phones_of_account
from gateway.business import Contact, Customer, contact_of, is_business
from gateway.config import VerificationConfig
from gateway.notify import CodeSender, PhoneCodeSender, account_exists
from gateway.store.schema_verification import signin_codes, signin_throttle, web_secrets

if TYPE_CHECKING:
    from gateway.host import Host

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


@dataclass(frozen=True, slots=True)
class Purpose:
    """The door a code opens: its name (kept with the code, at most 16 characters), the message
    (`{code}` and `{minutes}` filled in) and the senders allowed to carry it (None: all)."""

    name: str
    text: str
    channels: frozenset[str] | None = None

    def allows(self, sender: CodeSender) -> bool:
        return self.channels is None or sender.channel in self.channels


@dataclass(frozen=True, slots=True)
class Checked:
    """A check's answer: `ok`, or `wait` > 0 seconds when the throttles refused it unchecked."""

    ok: bool
    wait: int = 0

    @property
    def checked(self) -> bool:
        return self.wait == 0


Limits = Sequence[tuple[Key, Rule]]  # a door's throttles, widest first; the last is cleared on success


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


def code_hash(key: bytes, account: str, code: str, purpose: str = "cabinet") -> str:
    subject = account if purpose == "cabinet" else f"{purpose}:{account}"
    return hmac.new(key, f"{subject}:{code}".encode(), hashlib.sha256).hexdigest()


async def issue_code(
    engine: AsyncEngine,
    key: bytes,
    account: str,
    now: datetime,
    minutes: int,
    sent_via: str,
    purpose: str = "cabinet",
) -> str:
    """A new code for the account and purpose; an older live one is voided in the same transaction."""
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    c = signin_codes.c
    async with engine.begin() as conn:
        await conn.execute(
            update(signin_codes)
            .where(c.account == account, c.purpose == purpose, c.used_at.is_(None))
            .values(used_at=now)
        )
        await conn.execute(
            insert(signin_codes).values(
                account=account,
                purpose=purpose,
                code_hash=code_hash(key, account, code, purpose),
                created_at=now,
                expires_at=now + timedelta(minutes=minutes),
                attempts=0,
                sent_via=sent_via[:64],
            )
        )
    return code


async def check_code(
    engine: AsyncEngine,
    key: bytes,
    account: str,
    code: str,
    now: datetime,
    max_attempts: int,
    purpose: str = "cabinet",
) -> bool:
    """Is `code` the account's live code for `purpose`? The entry is counted before the
    comparison, and a right code is spent by the same statement that finds it unused: it works once."""
    c = signin_codes.c
    async with engine.begin() as conn:
        live = (
            await conn.execute(
                select(c.id)
                .where(c.account == account, c.purpose == purpose, c.used_at.is_(None), c.expires_at > now)
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
        len(code) == CODE_DIGITS
        and hmac.compare_digest(counted.code_hash, code_hash(key, account, code, purpose))
    ):
        return False
    async with engine.begin() as conn:
        spent = await conn.execute(
            update(signin_codes).where(c.id == live, c.used_at.is_(None)).values(used_at=now)
        )
    return spent.rowcount == 1


def digits_match(registered: Sequence[str], digits: str, count: int = 4) -> bool:
    """`digits` are the last `count` digits of one of the registered phones, compared with every
    one of them (and a dummy when there is none) in constant time."""
    wanted = re.sub(r"\D", "", digits)
    ok = False
    for phone in registered or ["+00000000000"]:
        last = re.sub(r"\D", "", phone)[-count:]
        ok |= hmac.compare_digest(last.encode(), wanted.encode())
    return ok and bool(registered) and len(wanted) == count


class Verifier:
    """The one verification of residents: codes issued, sent and checked, phones and digits
    checked, under the `[verification]` policy and the door's throttles.

    `senders` are set at start-up from the doors' notifiers (`shared_verifier`), once every door
    is installed; `start` loads the codes' key, `close` waits for the sends still under way."""

    def __init__(self, settings: VerificationConfig, senders: Sequence[CodeSender] = ()) -> None:
        self.settings = settings
        self.senders: list[CodeSender] = list(senders)
        self.key = b""
        self.tasks: set[asyncio.Task[list[str]]] = set()

    async def start(self, engine: AsyncEngine, now: datetime) -> None:
        self.key = await code_key(engine, now)

    def can_send(self, purpose: Purpose) -> bool:
        """Is there any sender this purpose may use? (Else the door does not offer a code.)"""
        return any(purpose.allows(s) for s in self.senders)

    def send_code_later(
        self, engine: AsyncEngine, account: str, purpose: Purpose, requester: Key, rule: Rule, now: datetime
    ) -> None:
        """`send_code` in the background: the door answers as fast whether the account exists or not."""
        task = asyncio.create_task(self.send_code(engine, account, purpose, requester, rule, now))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def send_code(
        self, engine: AsyncEngine, account: str, purpose: Purpose, requester: Key, rule: Rule, now: datetime
    ) -> list[str]:
        """Issue a code for the account and hand it to the purpose's senders; the channels that
        took it. Nothing is sent when `requester` (the client address or chat asking, over all
        accounts) asked too often by `rule`, when the account does not exist, or when a code for
        it and this purpose went out less than `code_resend_seconds` ago (that one still holds)."""
        s = self.settings
        try:
            if await reserve(engine, requester, rule, now):
                return []
            if not account or not await account_exists(engine, account):
                return []
            if await is_business(engine, account):  # identified by contract and contact only
                return []
            resend = s.code_resend_seconds
            once = Rule(free=1, cap=resend, base=resend, forget=resend)
            if await reserve(engine, Key(f"code:{purpose.name}", account, ANY), once, now):
                return []
            senders = [x for x in self.senders if purpose.allows(x)]
            via = ",".join(x.channel for x in senders)
            code = await issue_code(engine, self.key, account, now, s.code_minutes, via, purpose.name)
            text = purpose.text.format(code=code, minutes=s.code_minutes)
            delivered = [x.channel for x in senders if await x.send_code(engine, account, text)]
            log.info(
                "%s code for account %s: sent via %s", purpose.name, account, ",".join(delivered) or "nothing"
            )
            return delivered
        except Exception:
            log.exception("%s code for account %s not sent", purpose.name, account)
            return []

    async def check_code(
        self, engine: AsyncEngine, account: str, purpose: Purpose, code: str, limits: Limits, now: datetime
    ) -> Checked:
        """The code the resident typed, after the door's throttles are reserved."""

        async def right() -> bool:
            return bool(account) and await check_code(
                engine, self.key, account, code, now, self.settings.code_attempts, purpose.name
            )

        return await self._attempt(engine, limits, now, right)

    async def check_phone(
        self, engine: AsyncEngine, account: str, phone: str, limits: Limits, now: datetime
    ) -> Checked:
        """A phone the channel vouches for (Telegram's shared contact) is one registered for the account."""

        async def right() -> bool:
            if not account or await is_business(engine, account):
                return False
            return phone_matches(await phones_of_account(engine, account), phone)

        return await self._attempt(engine, limits, now, right)

    async def check_digits(
        self, engine: AsyncEngine, account: str, digits: str, limits: Limits, now: datetime
    ) -> Checked:
        """The last 4 digits of a registered phone; never right unless `phone_digits` is on."""

        async def right() -> bool:
            if not self.settings.phone_digits:
                return False
            business = bool(account) and await is_business(engine, account)
            registered = await phones_of_account(engine, account) if account and not business else []
            return digits_match(registered, digits)

        return await self._attempt(engine, limits, now, right)

    def can_send_to_phone(self, purpose: Purpose) -> bool:
        """Is there a sender this purpose may use that reaches a given phone (SMS, the demo's log)?"""
        return any(purpose.allows(s) and isinstance(s, PhoneCodeSender) for s in self.senders)

    def send_code_to_contact_later(
        self,
        engine: AsyncEngine,
        contract: str,
        phone: str,
        purpose: Purpose,
        requester: Key,
        rule: Rule,
        now: datetime,
    ) -> None:
        """`send_code_to_contact` in the background: the door answers as fast whether the contract
        and the phone are known or not."""
        task = asyncio.create_task(
            self.send_code_to_contact(engine, contract, phone, purpose, requester, rule, now)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def send_code_to_contact(
        self,
        engine: AsyncEngine,
        contract: str,
        phone: str,
        purpose: Purpose,
        requester: Key,
        rule: Rule,
        now: datetime,
    ) -> list[str]:
        """A code for the business customer's contact whose contract and phone these are, sent
        to that phone alone (gateway/business.py); the channels that took it. Nothing is sent
        when `requester` asked too often, when the contract has no contact with that phone, or
        when a code for that contact went out less than `code_resend_seconds` ago."""
        s = self.settings
        try:
            if await reserve(engine, requester, rule, now):
                return []
            found = await contact_of(engine, contract, phone)
            if found is None or found[1].id is None or found[1].phone is None:
                return []
            subject = _contact_subject(found[0].number, found[1].id)
            resend = s.code_resend_seconds
            once = Rule(free=1, cap=resend, base=resend, forget=resend)
            if await reserve(engine, Key(f"code:{purpose.name}", subject, ANY), once, now):
                return []
            senders = [x for x in self.senders if purpose.allows(x) and isinstance(x, PhoneCodeSender)]
            via = ",".join(x.channel for x in senders)
            code = await issue_code(engine, self.key, subject, now, s.code_minutes, via, purpose.name)
            text = purpose.text.format(code=code, minutes=s.code_minutes)
            delivered = [x.channel for x in senders if await x.send_code_to_phone(found[1].phone, text)]
            log.info("%s code for %s: sent via %s", purpose.name, subject, ",".join(delivered) or "nothing")
            return delivered
        except Exception:
            log.exception("%s code for a contact not sent", purpose.name)
            return []

    async def check_contact_code(
        self,
        engine: AsyncEngine,
        contract: str,
        phone: str,
        purpose: Purpose,
        code: str,
        limits: Limits,
        now: datetime,
    ) -> tuple[Checked, tuple[Customer, Contact] | None]:
        """The code typed by whoever gave this contract and phone, after the door's throttles are
        reserved; with the customer and contact it verified (None unless the code was right)."""
        verified: list[tuple[Customer, Contact]] = []

        async def right() -> bool:
            found = await contact_of(engine, contract, phone)
            if found is None or found[1].id is None:
                return False
            subject = _contact_subject(found[0].number, found[1].id)
            ok = await check_code(
                engine, self.key, subject, code, now, self.settings.code_attempts, purpose.name
            )
            if ok:
                verified.append(found)
            return ok

        checked = await self._attempt(engine, limits, now, right)
        return checked, (verified[0] if verified else None)

    async def _attempt(
        self, engine: AsyncEngine, limits: Limits, now: datetime, right: Callable[[], Awaitable[bool]]
    ) -> Checked:
        wait = await reserve_all(engine, limits, now)
        if wait:
            return Checked(False, wait)
        ok = await right()
        if ok and limits:
            await clear(engine, limits[-1][0])
        return Checked(ok)

    async def close(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


def _contact_subject(account: str, contact_id: int) -> str:
    """Whom a contact's code is kept under: the contract's account and the contact (32 characters
    at most: an account is 16 digits)."""
    return f"{account}:{contact_id}"[:32]


VERIFIER = web.AppKey("verifier", Verifier)


def shared_verifier(host: Host, app: web.Application) -> Verifier:
    """The application's one `Verifier`, made by the first door that asks for it. Its code
    senders are the doors' notifiers when the application starts (a door may be installed after
    the one asking), its key is loaded then, and the sends under way are awaited at shutdown."""
    found = app.get(VERIFIER)
    if found is not None:
        return found
    verifier = Verifier(host.config.verification)
    app[VERIFIER] = verifier

    async def start(_app: web.Application) -> None:
        verifier.senders = host.notifiers.code_senders(host.config.verification)
        await verifier.start(host.engine, host.clock())

    async def stop(_app: web.Application) -> None:  # before the doors' senders are closed
        await verifier.close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    return verifier
