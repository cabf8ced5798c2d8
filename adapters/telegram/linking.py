"""Linking a chat to an account: the number, then a second factor, through the one verification
of residents (gateway/verification.py, the same as the cabinet's sign-in).

The second factor is the shared contact (Telegram's proof of the phone), a code sent by SMS to
the account's registered phones (`LINK_CODE`, never to a chat), or, only with
`verification.phone_digits`, the last 4 digits of a registered phone. The chat is told the same
whether the account exists or not. The commands that start it (/start, /link, /unlink) are in
bot_commands.py; the steps and the unlink buttons are here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message, ReplyKeyboardMarkup, ReplyKeyboardRemove

from adapters.telegram import texts
from adapters.telegram.storage import remember
from gateway import verification
from gateway.grammar import ACCOUNT_DIGITS
from gateway.verification import ANY, Checked, Key, Purpose, Rule

if TYPE_CHECKING:
    from adapters.telegram.channel import TelegramChannel

# The linking code goes by SMS to the account's registered phones (or, in the demo, to the log),
# never to a Telegram chat: not to the one asking, nor to the chats linked already.
LINK_CODE = Purpose("telegram", texts.LINK_CODE_SMS, frozenset({"sms", "log"}))
_ACCOUNT = re.compile(rf"\d{{{ACCOUNT_DIGITS[0]},{ACCOUNT_DIGITS[1]}}}")  # gateway/grammar.py's format


class Link(StatesGroup):  # the class name is part of the state stored in telegram_fsm
    account = State()  # waiting for the account number
    factor = State()  # waiting for the contact, the code from the SMS (or, when enabled, 4 digits)


def router() -> Router:
    r = Router(name="telegram-linking")
    r.message.register(on_account, Link.account, F.text)
    r.message.register(on_contact, Link.factor, F.contact)
    r.message.register(on_factor_text, Link.factor, F.text)
    r.message.register(on_stray_contact, F.contact)
    r.callback_query.register(on_unlink_button, F.data.startswith("ul:"))
    return r


# -- throttles ------------------------------------------------------------------------------------


def chat_rule(tg: TelegramChannel) -> Rule:
    """What one chat may try over all accounts (and how many codes it may ask for)."""
    s = tg.settings
    return Rule(2 * s.link_max_failures, s.link_window_minutes * 60)


def link_keys(tg: TelegramChannel, chat_id: int, account: str, method: str) -> list[tuple[Key, Rule]]:
    """The throttles of one linking attempt (gateway/verification.py), reserved before the
    factor is checked: the chat over all accounts, for the guessable last digits the account
    from any chat, then the account from this chat (the pair a success clears). A shared
    contact is Telegram's own proof of the phone, and a code is void after its own attempts
    from all chats together: a stranger's guessing never slows the holder down."""
    s = tg.settings
    cap = s.link_window_minutes * 60
    chat = f"chat:{chat_id}"
    keys = [(Key("telegram", ANY, chat), chat_rule(tg))]
    if method == "last4":
        keys.append((Key("telegram", account or "-", ANY), Rule(s.link_max_failures_per_account, cap)))
    keys.append((Key("telegram", account or "-", chat), Rule(s.link_max_failures, cap)))
    return keys


# -- steps ----------------------------------------------------------------------------------------


async def greet(tg: TelegramChannel, chat_id: int, linked: list[str]) -> None:
    await tg.say(chat_id, texts.greeting(linked), texts.menu_keyboard())


async def start_link(tg: TelegramChannel, chat_id: int, state: FSMContext, first: bool) -> None:
    await remember(state, Link.account, {})
    await tg.say(chat_id, (texts.FIRST_LINK if first else texts.ANOTHER_LINK) + texts.ASK_ACCOUNT)


def _factor_keyboard(tg: TelegramChannel) -> ReplyKeyboardMarkup:
    return texts.factor_keyboard(tg.verifier.can_send(LINK_CODE))


async def ask_factor(tg: TelegramChannel, chat_id: int, account: str, state: FSMContext) -> None:
    """The second factor: the same words whether the account exists or not."""
    await remember(state, Link.factor, {"link_account": account})
    text = texts.ASK_FACTOR.format(account=account)
    if tg.verifier.can_send(LINK_CODE):
        text += texts.ASK_CODE
    if tg.verifier.settings.phone_digits:
        text += texts.ASK_DIGITS
    await tg.say(chat_id, text + ".", _factor_keyboard(tg))


async def _send_link_code(tg: TelegramChannel, chat_id: int, state: FSMContext) -> None:
    """A code by SMS to the account's registered phones, in the background; the chat is told the
    same whether the account exists, has a phone, or asked too often."""
    account = str((await state.get_data()).get("link_account") or "")
    if tg.verifier.can_send(LINK_CODE):
        requester = Key("code_send", ANY, f"chat:{chat_id}")
        tg.verifier.send_code_later(tg.db.engine, account, LINK_CODE, requester, chat_rule(tg), tg.clock())
    s = tg.verifier.settings
    await tg.say(chat_id, texts.CODE_SENT.format(minutes=s.code_minutes, resend=s.code_resend_seconds))


async def _check_factor(
    tg: TelegramChannel, message: Message, state: FSMContext, method: str, proof: str
) -> None:
    """Link when the second factor is right (gateway/verification.py, after the throttles)."""
    chat_id = message.chat.id
    account = str((await state.get_data()).get("link_account") or "")
    keys = link_keys(tg, chat_id, account, method)
    engine, now, verifier = tg.db.engine, tg.clock(), tg.verifier
    outcome: Checked
    if method == "contact":
        outcome = await verifier.check_phone(engine, account, proof, keys, now)
    elif method == "code":
        outcome = await verifier.check_code(engine, account, LINK_CODE, proof, keys, now)
    else:
        outcome = await verifier.check_digits(engine, account, proof, keys, now)
    if not outcome.checked:
        await remember(state, None, {})
        wait = verification.wait_text(outcome.wait)
        await tg.say(chat_id, texts.TOO_MANY_TRIES.format(wait=wait), ReplyKeyboardRemove())
        return
    ok = outcome.ok
    await tg.store.record_attempt(chat_id, account, method, ok)
    if ok:
        await tg.store.link(chat_id, message.from_user.id if message.from_user else None, account, method)
        tg.links_changed(chat_id)
        await remember(state, None, {})
        await tg.say(chat_id, texts.LINKED.format(account=account), ReplyKeyboardRemove())
        await greet(tg, chat_id, await tg.linked(chat_id))
        return
    # The same answer whether the account is unknown or the phone differs: nothing to probe.
    await tg.say(
        chat_id, texts.CODE_FAILED if method == "code" else texts.FACTOR_MISMATCH.format(account=account)
    )


async def unlink_menu(tg: TelegramChannel, chat_id: int) -> None:
    linked = await tg.linked(chat_id)
    if not linked:
        await tg.say(chat_id, texts.NOTHING_LINKED)
        return
    await tg.say(
        chat_id,
        texts.WHICH_TO_UNLINK,
        texts.choice_keyboard([(texts.UNLINK_BUTTON.format(account=a), f"ul:{a}") for a in linked]),
    )


# -- handlers -------------------------------------------------------------------------------------


async def on_account(message: Message, state: FSMContext, tg: TelegramChannel) -> None:
    number = re.sub(r"[\s-]", "", message.text or "")
    if not _ACCOUNT.fullmatch(number):
        await tg.say(message.chat.id, texts.NOT_AN_ACCOUNT)
        return
    if number in await tg.linked(message.chat.id):
        await remember(state, None, {})
        await tg.say(message.chat.id, texts.ALREADY_LINKED.format(account=number), texts.menu_keyboard())
        return
    await ask_factor(tg, message.chat.id, number, state)


async def on_contact(message: Message, state: FSMContext, tg: TelegramChannel) -> None:
    contact = message.contact
    assert contact is not None
    if message.from_user is None or contact.user_id != message.from_user.id:
        await tg.say(message.chat.id, texts.OWN_CONTACT)
        return
    await _check_factor(tg, message, state, "contact", contact.phone_number)


async def on_factor_text(message: Message, state: FSMContext, tg: TelegramChannel) -> None:
    text = (message.text or "").strip()
    if text == texts.CODE_BUTTON and tg.verifier.can_send(LINK_CODE):
        await _send_link_code(tg, message.chat.id, state)
        return
    typed = re.sub(r"[\s-]", "", text)
    if re.fullmatch(r"\d{6}", typed):
        await _check_factor(tg, message, state, "code", typed)
        return
    if tg.verifier.settings.phone_digits and re.fullmatch(r"\d{4}", typed):
        await _check_factor(tg, message, state, "last4", typed)
        return
    digits = texts.OR_DIGITS if tg.verifier.settings.phone_digits else ""
    await tg.say(message.chat.id, texts.ASK_FACTOR_AGAIN.format(digits=digits), _factor_keyboard(tg))


async def on_stray_contact(message: Message, tg: TelegramChannel) -> None:
    await tg.say(message.chat.id, texts.STRAY_CONTACT)


async def on_unlink_button(query: CallbackQuery, tg: TelegramChannel) -> None:
    chat_id = tg.chat_id(query)
    account = (query.data or "")[3:]
    removed = await tg.store.unlink(chat_id, account)
    tg.links_changed(chat_id)
    await tg.answer(query, texts.UNLINKED_ANSWER if removed else texts.ALREADY_UNLINKED_ANSWER)
    if removed:
        await tg.say(chat_id, texts.UNLINKED.format(account=account))
