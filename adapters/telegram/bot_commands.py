"""The bot's commands (/start, /help, /reading, ...) and what no other handler takes.

The commands are registered before every step of a conversation (channel.py's `routers()`), so
a command typed in the middle of a step is the command, not the step's answer. They only start
what linking.py, readings.py and notifier.py carry out. The menu Telegram shows is
`texts.BOT_COMMANDS`, set by webhook.py when the bot starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, ReplyKeyboardRemove, Update

from adapters.telegram import linking, notifier, readings, texts
from adapters.telegram.storage import remember

if TYPE_CHECKING:
    from adapters.telegram.channel import TelegramChannel


def router() -> Router:
    r = Router(name="telegram-commands")
    r.message.register(on_start, CommandStart())
    r.message.register(on_cancel, Command("cancel"))
    r.message.register(on_help, Command("help"))
    r.message.register(on_history, Command("history"))
    r.message.register(on_link, Command("link"))
    r.message.register(on_unlink, Command("unlink"))
    r.message.register(on_stop, Command("stop"))
    r.message.register(on_remind, Command("remind"))
    r.message.register(on_reading, Command("reading"))
    return r


def leftovers() -> Router:
    """Last in a private chat: any other message, the cancel button, stale buttons."""
    r = Router(name="telegram-leftovers")
    r.message.register(on_other)
    r.callback_query.register(on_cancel_button, F.data == "cancel")
    r.callback_query.register(on_stale)
    return r


def groups() -> Router:
    """Everything outside private chats: readings are taken in private messages only."""
    r = Router(name="telegram-groups")
    r.message.register(on_group)
    r.callback_query.register(on_group_button)
    return r


# -- commands -------------------------------------------------------------------------------------


async def on_start(message: Message, state: FSMContext, tg: TelegramChannel, command: CommandObject) -> None:
    chat_id = message.chat.id
    linked = await tg.linked(chat_id)
    payload = (command.args or "").strip()
    if payload.isdigit() and payload not in linked:  # a deep link naming the account
        await linking.ask_factor(tg, chat_id, payload, state)
        return
    if linked:
        await remember(state, None, {})
        await linking.greet(tg, chat_id, linked)
        return
    await linking.start_link(tg, chat_id, state, first=True)


async def on_cancel(message: Message, state: FSMContext, tg: TelegramChannel) -> None:
    await remember(state, None, {})
    await tg.say(message.chat.id, texts.CANCELLED, ReplyKeyboardRemove())


async def on_help(message: Message, tg: TelegramChannel) -> None:
    await tg.say(message.chat.id, texts.HELP)


async def on_history(message: Message, tg: TelegramChannel) -> None:
    await readings.history(tg, message.chat.id)


async def on_link(message: Message, state: FSMContext, tg: TelegramChannel) -> None:
    await linking.start_link(tg, message.chat.id, state, first=False)


async def on_unlink(message: Message, tg: TelegramChannel) -> None:
    await linking.unlink_menu(tg, message.chat.id)


async def on_stop(message: Message, tg: TelegramChannel) -> None:
    await notifier.switch_reminders(tg, message.chat.id, False)


async def on_remind(message: Message, tg: TelegramChannel) -> None:
    await notifier.switch_reminders(tg, message.chat.id, True)


async def on_reading(message: Message, state: FSMContext, tg: TelegramChannel, event_update: Update) -> None:
    await readings.begin_guided(tg, message.chat.id, state, event_update)


# -- what is left ---------------------------------------------------------------------------------


async def on_other(message: Message, tg: TelegramChannel) -> None:
    await tg.say(message.chat.id, texts.OTHER_MESSAGE)


async def on_cancel_button(query: CallbackQuery, state: FSMContext, tg: TelegramChannel) -> None:
    await remember(state, None, {})
    await tg.answer(query, texts.CANCELLED_ANSWER)
    await tg.say(tg.chat_id(query), texts.CANCELLED)


async def on_stale(query: CallbackQuery, tg: TelegramChannel) -> None:
    await tg.answer(query, texts.STALE_BUTTON_RESTART, show_alert=True)


async def on_group(message: Message, tg: TelegramChannel) -> None:
    await tg.say(message.chat.id, texts.GROUP_CHAT)


async def on_group_button(query: CallbackQuery, tg: TelegramChannel) -> None:
    await tg.answer(query)
