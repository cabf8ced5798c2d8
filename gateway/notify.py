"""How the core reaches residents: the port a door implements, and the registry doors fill.

The core decides what to tell and when (gateway/reminders.py: the period's reminders;
gateway/held_job.py: reminders to confirm, "expired" and "billing has it" notices;
gateway/verification.py: one-time codes); a door only finds its recipients and sends. A door
that can reach residents (the SMS door through Kannel's sendsms, the Telegram door through its
bot) builds a `Notifier` in its `install` and adds it with `host.notifiers.add(...)`; the jobs
and the verifier read the registry when they run, so the order of installation does not matter.
A failed send raises `SendFailed`, saying whether the message surely did not go (then it may be
retried) or may have gone (then it is not, so nobody gets it twice).

The demo's destination of codes, the gateway's log (`[verification] code_to_log`), is the
core's own `LogCodeSender`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Protocol, runtime_checkable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.config import VerificationConfig
from gateway.privacy import mask_phone
from gateway.store.schema import accounts

log = logging.getLogger(__name__)


class SendFailed(Exception):
    """A door could not hand the message over."""

    def __init__(self, message: str, surely_not_sent: bool) -> None:
        super().__init__(message)
        self.surely_not_sent = surely_not_sent  # False when it may have gone (timeout after sending)


@dataclass(frozen=True, slots=True)
class DueReminder:
    """The reminder due today (gateway/reminders.py decides which)."""

    period: str  # "YYYY-MM"
    kind: str  # "window_start" | "last_day"
    window_end: date  # the last day readings of `period` are taken
    today: date  # local
    contacts: str = ""  # where the branch's residents ask questions ("" : none to name)


@dataclass(frozen=True, slots=True)
class Reading:
    """What a notice about a reading knows of it (gateway/held_job.py)."""

    receipt: int
    account_id: int
    account: str
    channel: str  # the door it came through (gateway.model.Channel's value)
    period: str
    verdict: str
    values: dict[str, Decimal]
    committed: bool  # every zone


class CodeSender(Protocol):
    """A way to get a one-time code to the holder of an account (SMS, Telegram, the demo's log)."""

    channel: str

    async def send_code(self, engine: AsyncEngine, account: str, text: str) -> bool:
        """Send `text` to the account's registered destinations; True if any took it."""
        ...


@runtime_checkable
class PhoneCodeSender(Protocol):
    """A code sender that also reaches one given phone (the SMS door): a business customer's
    contact gets the code on the phone they signed in with (gateway/business.py)."""

    channel: str

    async def send_code_to_phone(self, phone: str, text: str) -> bool:
        """Send `text` to this phone (E.164); True if it took it."""
        ...


class Reminds(Protocol):
    """What the reminder job uses of a door: the period's reminders to those who owe a reading."""

    channel: str  # stored in reminder_log and notices: "sms", "telegram"

    async def contacts(self, engine: AsyncEngine, accounts: Mapping[int, str]) -> dict[str, list[int]]:
        """Recipients of reminders for these accounts (id -> number): recipient -> the account ids
        it stands for (less those who asked for none)."""
        ...

    def text(self, due: DueReminder, account_numbers: list[str]) -> str:
        """The reminder's text for one recipient, in the door's words."""
        ...

    async def send(self, recipient: str, text: str) -> None:
        """Send one message; raise SendFailed when it did not (surely) go."""
        ...

    async def close(self) -> None: ...


class Notifier(Reminds, CodeSender, Protocol):
    """The port a door implements to reach residents: reminders, notices about their readings,
    one-time codes."""

    reminders: bool  # takes the period's reminders (`[sms] reminders`, `[telegram] reminders`)
    any_hour: bool  # notices may go at night and on holidays (a chat); else only in sending hours
    billing_notices: bool  # tells "billing has it" (`[sms] billing_notices`; Telegram always)

    async def recipients(self, conn: AsyncConnection, reading: Reading) -> list[str]:
        """Whom this door tells about the reading (Telegram: the chats linked to its account;
        SMS: the registered phone the SMS reading came from)."""
        ...

    def confirm_text(self, values: str, account: str) -> str:
        """The reminder to confirm a held reading, saying how to confirm through this door."""
        ...

    async def send(self, recipient: str, text: str, confirm: int | None = None) -> None:
        """Send one message, with the door's buttons to confirm or correct receipt `confirm` if it
        has any; raise SendFailed when it did not (surely) go."""
        ...


class LogCodeSender:
    """The demo's destination: the code in the gateway's log (never configure this in production)."""

    channel = "log"

    async def send_code(self, engine: AsyncEngine, account: str, text: str) -> bool:
        if not await account_exists(engine, account):
            return False
        log.warning("verification.code_to_log: account %s, %s", account, text)
        return True

    async def send_code_to_phone(self, phone: str, text: str) -> bool:
        log.warning("verification.code_to_log: phone %s, %s", mask_phone(phone), text)
        return True


async def account_exists(engine: AsyncEngine, account: str) -> bool:
    async with engine.connect() as conn:
        found = await conn.execute(select(accounts.c.id).where(accounts.c.number == account))
        return found.first() is not None


@dataclass
class Notifiers:
    """The doors that reach residents in this gateway, in the order they were installed."""

    doors: list[Notifier] = field(default_factory=list)
    # How often the reminder job looks for work: `[sms] reminder_check_seconds`, set by the SMS
    # door (the key is documented there; it paces the reminders of every door).
    reminder_check_seconds: float = 300.0

    def add(self, notifier: Notifier) -> None:
        """Register a door's notifier (from its `install`)."""
        self.doors.append(notifier)

    def get(self, channel: str) -> Notifier | None:
        return next((n for n in self.doors if n.channel == channel), None)

    def reminding(self) -> list[Notifier]:
        """The doors that take the period's reminders."""
        return [n for n in self.doors if n.reminders]

    def code_senders(self, settings: VerificationConfig) -> list[CodeSender]:
        """Where one-time codes go: every door (SMS first, as installed), then the log if asked."""
        senders: list[CodeSender] = list(self.doors)
        if settings.code_to_log:
            senders.append(LogCodeSender())
        return senders

    async def close(self) -> None:
        for notifier in self.doors:
            await notifier.close()
