"""Where residents' one-time codes go (gateway/verification.py): SMS to the account's registered
phones through Kannel's sendsms (`[sms] sendsms_url`), the chats linked to the account in
Telegram, and — only when `verification.code_to_log` is set, as in the demo — the gateway's log.

Each sender reports whether it handed the code to at least one destination; the verifier tries
every sender the door's purpose allows, so a resident with a phone and a linked chat gets a
cabinet code in both. `shared_verifier` gives every door the one `Verifier` of the application,
its senders chosen at start-up, when every door is installed (whatever their order).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.reminders import SendFailed
from adapters.sms.kannel import KannelSendsms
from gateway import accounts as registry
from gateway.app_keys import CLOCK, CONFIG, ENGINE
from gateway.config import Config
from gateway.privacy import mask_phone
from gateway.store.schema import accounts
from gateway.verification import CodeSender, Verifier

if TYPE_CHECKING:
    from adapters.telegram.channel import TelegramChannel

log = logging.getLogger(__name__)


class SmsCodeSender:
    """The code by SMS to every phone registered for the account."""

    channel = "sms"

    def __init__(self, sms: KannelSendsms) -> None:
        self.sms = sms

    async def send_code(self, engine: AsyncEngine, account: str, text: str) -> bool:
        sent = False
        for phone in await registry.phones_of_account(engine, account):
            try:
                await self.sms.send(phone, text)
                sent = True
            except SendFailed as exc:
                log.warning("sign-in code to %s not sent: %s", mask_phone(phone), exc)
        return sent


class LogCodeSender:
    """The demo's destination: the code in the gateway's log (never configure this in production)."""

    channel = "log"

    async def send_code(self, engine: AsyncEngine, account: str, text: str) -> bool:
        if not await account_exists(engine, account):
            return False
        log.warning("verification.code_to_log: account %s, %s", account, text)
        return True


async def account_exists(engine: AsyncEngine, account: str) -> bool:
    async with engine.connect() as conn:
        found = await conn.execute(select(accounts.c.id).where(accounts.c.number == account))
        return found.first() is not None


def code_senders(config: Config, telegram: TelegramChannel | None) -> list[CodeSender]:
    """The senders this configuration can use, SMS first."""
    senders: list[CodeSender] = []
    if config.sms.sendsms_url:
        senders.append(SmsCodeSender(KannelSendsms(config.sms)))
    if telegram is not None:
        from adapters.telegram.notifier import TelegramCodeSender  # aiogram: only with the bot on

        senders.append(TelegramCodeSender(telegram))
    if config.verification.code_to_log:
        senders.append(LogCodeSender())
    return senders


async def close_senders(senders: list[CodeSender]) -> None:
    for sender in senders:
        if isinstance(sender, SmsCodeSender):
            await sender.sms.close()


VERIFIER = web.AppKey("verifier", Verifier)


def shared_verifier(app: web.Application) -> Verifier:
    """The application's one `Verifier`, made by the first door that asks for it. Its senders
    are chosen when the application starts (the Telegram channel may be installed after the
    door), its key is loaded then, and the sends under way are awaited at shutdown."""
    found = app.get(VERIFIER)
    if found is not None:
        return found
    config = app[CONFIG]
    verifier = Verifier(config.verification)
    app[VERIFIER] = verifier

    async def start(app: web.Application) -> None:
        from adapters.telegram.keys import TELEGRAM

        verifier.senders = code_senders(config, app.get(TELEGRAM))
        await verifier.start(app[ENGINE], app[CLOCK]())

    async def stop(_app: web.Application) -> None:  # before the bot's session is closed
        await verifier.close()
        await close_senders(verifier.senders)

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    return verifier
