"""What the bot tells a chat outside a conversation, through the channel's bot: the door's
`Notifier` (gateway/notify.py) for the core's reminders to submit readings, notices about held
readings and billing (a reminder to confirm with the same "Подтвердить" / "Исправить" buttons as
the first answer) and residents' one-time codes; and a chat's own switch for reminders (/stop,
/remind).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiogram.exceptions import (
    TelegramAPIError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import SendMessage
from sqlalchemy import select

from adapters.telegram import texts
from adapters.telegram.tables import telegram_links
from gateway.notify import DueReminder, Reading, SendFailed
from gateway.store.schema import accounts as accounts_table
from gateway.validation.explain import period_ru

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from adapters.telegram.channel import TelegramChannel

log = logging.getLogger(__name__)


async def switch_reminders(tg: TelegramChannel, chat_id: int, on: bool) -> None:
    """/stop and /remind (or the words): for every account linked to the chat."""
    if not await tg.store.set_reminders(chat_id, on):
        await tg.say(chat_id, texts.LINK_PROMPT)
    else:
        await tg.say(chat_id, texts.REMINDERS_ON if on else texts.REMINDERS_OFF)


class TelegramNotifier:
    """The Telegram door's notifier: reminders to submit readings to the chats linked to the
    accounts that have none yet (a chat that said "стоп" gets none; none at all without
    `[telegram] reminders`), notices about readings to every chat linked to the account, at any
    hour, and one-time codes."""

    channel = "telegram"
    any_hour = True  # a chat is read when its owner chooses
    billing_notices = True  # "billing has it" of every reading of a linked account

    def __init__(self, tg: TelegramChannel, reminders: bool = True) -> None:
        self.tg = tg
        self.reminders = reminders

    async def contacts(self, engine: AsyncEngine, accounts: Mapping[int, str]) -> dict[str, list[int]]:
        return await self.tg.store.chats_to_remind(list(accounts))

    def text(self, due: DueReminder, account_numbers: list[str]) -> str:
        until = f"{due.window_end:%d.%m}"
        named = ", ".join(account_numbers)
        period = period_ru(due.period)
        if due.kind == "last_day" and due.today == due.window_end:
            lead = texts.REMIND_LAST_DAY_TODAY.format(period=period, accounts=named)
        elif due.kind == "last_day":
            lead = texts.REMIND_LAST_DAY.format(period=period, accounts=named, until=until)
        else:
            lead = texts.REMIND_DUE.format(period=period, accounts=named, until=until)
        return lead + (f"\n{due.contacts}" if due.contacts else "") + texts.REMIND_TAIL

    async def recipients(self, conn: AsyncConnection, reading: Reading) -> list[str]:
        """Every chat linked to the reading's account."""
        chats = await conn.execute(
            select(telegram_links.c.chat_id)
            .where(telegram_links.c.account_id == reading.account_id)
            .order_by(telegram_links.c.chat_id)
        )
        return [str(c) for c in chats.scalars()]

    def confirm_text(self, values: str, account: str) -> str:
        return texts.CONFIRM_REMINDER.format(values=values, account=account)

    async def send(self, recipient: str, text: str, confirm: int | None = None) -> None:
        markup = texts.confirm_keyboard(confirm) if confirm is not None else None
        try:
            await self.tg.bot(SendMessage(chat_id=int(recipient), text=text, reply_markup=markup))
        except TelegramForbiddenError as exc:  # the resident blocked the bot: stop reminding
            await self.tg.store.set_reminders(int(recipient), False)
            raise SendFailed(f"chat {recipient}: {exc}", surely_not_sent=False) from exc
        except (TelegramServerError, TelegramRetryAfter) as exc:
            raise SendFailed(f"chat {recipient}: {exc}", surely_not_sent=True) from exc
        except TelegramNetworkError as exc:  # a timeout may come after Telegram took it
            raise SendFailed(f"chat {recipient}: {exc}", surely_not_sent="timeout" not in str(exc)) from exc
        except TelegramAPIError as exc:
            raise SendFailed(f"chat {recipient}: {exc}", surely_not_sent=False) from exc

    async def send_code(self, engine: AsyncEngine, account: str, text: str) -> bool:
        """A resident's one-time code to every Telegram chat linked to the account."""
        query = (
            select(telegram_links.c.chat_id)
            .join(accounts_table, accounts_table.c.id == telegram_links.c.account_id)
            .where(accounts_table.c.number == account)
        )
        async with engine.connect() as conn:
            chats = list((await conn.execute(query)).scalars())
        sent = False
        for chat_id in chats:
            try:
                await self.tg.bot(SendMessage(chat_id=int(chat_id), text=text))
                sent = True
            except TelegramAPIError as exc:
                log.warning("sign-in code to a Telegram chat of account %s not sent: %s", account, exc)
        return sent

    async def close(self) -> None:
        pass  # the bot's session is closed with the application
