"""Telegram (aiogram 3): residents link their chat to an account and send readings as free text
(the one grammar) or step by step with buttons; the verdict comes back as a message.

Updates arrive at `POST /channels/telegram/webhook` (the `X-Telegram-Bot-Api-Secret-Token` header
must equal `[telegram] webhook_secret`) or by long polling (`getUpdates`), as configured. Either
way each update is stored in `telegram_updates` and committed before it is acknowledged (the
webhook answers 200 only after that, polling confirms it with the next offset), updates of one chat
are handled one at a time (a lock per chat), and a redelivered update_id is recognised and gets no
second reading and no second reply. The conversation state lives in the database
(`DatabaseStorage`), so a restart between two steps of a conversation loses nothing.

The handlers only translate: a reading becomes a `Submission` for the intake (channel
`telegram`, sender the chat id, `channel_message_id` the update_id, `raw` the update JSON), and
the `Verdict` becomes a Russian message, with "Подтвердить"/"Исправить" buttons when the value
needs the resident's confirmation (`gateway.held.confirm`).

Linking a chat to an account uses the one verification of residents (gateway/verification.py,
the same as the cabinet's sign-in): the shared contact (Telegram's proof of the phone), a code
sent by SMS to the registered phones (`LINK_CODE`, never to a chat), or, only with
`verification.phone_digits`, the last 4 digits of a registered phone.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import AsyncIterator, Hashable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import aiohttp
import orjson
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.default import Default
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage, TelegramMethod
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from aiogram.types.update import UpdateTypeLookupError
from aiohttp import web
from pydantic import ValidationError

from adapters.code_senders import shared_verifier
from adapters.http_common import ApiError, error_response, json_response
from adapters.reminders import DueReminder, SendFailed, add_notifier
from adapters.telegram_storage import DatabaseStorage, Db, FsmChanges, TelegramStore
from adapters.telegram_storage import Link as StoredLink
from gateway import accounts, held, verification
from gateway.config import Config, TelegramConfig
from gateway.grammar import HELP_RU, ParsedReading, ParseFailure, parse_message
from gateway.grammar import Command as TextCommand
from gateway.intake import Clock, Intake
from gateway.model import Channel, Severity, Status, Submission, Verdict
from gateway.privacy import chat_ref, mask_phones_in
from gateway.validation.explain import num, period_ru
from gateway.verification import ANY, Checked, Key, Purpose, Rule, Verifier

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from gateway.service import Gateway

log = logging.getLogger(__name__)
T = TypeVar("T")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_PATH = "/channels/telegram/webhook"
ALLOWED_UPDATES = ["message", "callback_query"]
MAX_ATTEMPTS = 3  # a handler that fails is tried this many times (Telegram redelivers the update)
MAX_SEND_ATTEMPTS = 10  # replies that cannot be sent are tried with this many deliveries
# "ignored": an update of a type aiogram does not know (a newer Bot API): acknowledged, not stored.
Outcome = Literal["done", "duplicate", "retry", "failed", "ignored"]

# -- texts ------------------------------------------------------------------------------------

LINK_PROMPT = "Чтобы передавать показания, привяжите лицевой счёт: нажмите /start."
ASK_ACCOUNT = "Пришлите номер лицевого счёта (5-12 цифр, он есть в квитанции).\nОтменить: /cancel"
SHARE_BUTTON = "📱 Поделиться номером"
CODE_BUTTON = "✉️ Получить код по SMS"
ASK_FACTOR = (
    "Подтвердите, что это ваш л/с {account}: нажмите «Поделиться номером» (телефон должен быть тот, "
    "что указан в договоре)"
)
ASK_CODE = " или «Получить код по SMS»: код придёт на телефон, указанный в договоре"
ASK_DIGITS = ". Можно также прислать последние 4 цифры этого телефона"
CODE_SENT = (
    "Если номер л/с указан верно и для него указан телефон, мы отправили на этот телефон SMS "
    "с кодом из 6 цифр. Пришлите код сюда, он действует {minutes} мин. Новый код можно получить "
    "не раньше чем через {resend} с. Отменить: /cancel"
)
CODE_FAILED = (
    "Код не подходит: он неверный, устарел или уже использован. Проверьте его или получите новый: "
    "«Получить код по SMS». Отменить: /cancel"
)
FACTOR_MISMATCH = (
    "Не совпадает с телефоном, указанным для л/с {account}. Проверьте номер л/с и телефон "
    "и попробуйте снова, или /cancel."
)
# The linking code goes by SMS to the account's registered phones (or, in the demo, to the log),
# never to a Telegram chat: not to the one asking, nor to the chats linked already.
LINK_CODE = Purpose(
    "telegram",
    "Код для привязки Telegram к лицевому счёту: {code}. Действует {minutes} мин. "
    "Никому его не сообщайте, даже сотрудникам.",
    frozenset({"sms", "log"}),
)
HELP = (
    "Как передать показания:\n"
    "• сообщением: 12345 (однотарифный счётчик) или Т1 12345 Т2 6789 (день/ночь), "
    "с номером л/с: 1234567 12345;\n"
    "• по шагам: /reading — счётчик и зона выбираются кнопками, видно прежнее показание.\n"
    "/history — последние показания и их статус\n"
    "/link — привязать ещё один л/с, /unlink — отвязать\n"
    "/stop — не присылать напоминания, /remind — присылать\n"
    "/cancel — отменить ввод\n" + HELP_RU
)
STATUS_HEAD = {
    Status.ACCEPTED: "✅ Показания приняты",
    Status.FLAGGED: "🕓 Показания получены и переданы на проверку",
    Status.NEEDS_CONFIRMATION: "⚠️ Проверьте показания",
    Status.REJECTED: "❌ Показания не приняты",
}
HISTORY_STATUS = {
    Status.ACCEPTED.value: "принято",
    Status.FLAGGED.value: "на проверке",
    Status.NEEDS_CONFIRMATION.value: "ждёт вашего подтверждения",
    Status.REJECTED.value: "не принято",
}
ZONES_RU = {"T1": "Т1", "T2": "Т2", "T3": "Т3"}
TWO_RATE = {"T1": "Т1 (день)", "T2": "Т2 (ночь)"}
THREE_RATE = {"T1": "Т1 (пик)", "T2": "Т2 (ночь)", "T3": "Т3 (полупик)"}


def zone_label(zone: str, zones: tuple[str, ...] | list[str]) -> str:
    """'Т1 (день)' on a day/night meter, 'Т1 (пик)' on a three-rate one, 'Показание' on a single-rate."""
    if zone == "T":
        return "Показание"
    labels = THREE_RATE if "T3" in zones else TWO_RATE
    return labels.get(zone) or ZONES_RU.get(zone, zone)


def day(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%d.%m.%Y")


def render_verdict(v: Verdict, tz: ZoneInfo) -> str:
    """The verdict as the resident reads it: what was understood, what was decided, and why."""
    head = STATUS_HEAD[v.status]
    if v.duplicate:
        head += " (эти показания уже были получены)"
    lines = [head]
    where = [
        p for p in (v.account and f"Л/с {v.account}", v.meter_serial and f"счётчик {v.meter_serial}") if p
    ]
    if where:
        lines.append(", ".join(where))
    zones = tuple(r.zone for r in v.readings)
    for r in sorted(v.readings, key=lambda r: r.zone):
        if r.value is not None:
            lines.append(f"{zone_label(r.zone, zones)}: {num(r.value)} кВт·ч")
    lines.extend(f"• {r.message_ru}" for r in v.reasons if r.message_ru)
    if v.status in (Status.ACCEPTED, Status.FLAGGED) and v.receipt is not None:
        tail = f"Квитанция № {v.receipt}"
        if v.period:
            tail += f", учтём за {period_ru(v.period)} {v.period[:4]} г."
        lines.append(tail)
    elif v.status is Status.NEEDS_CONFIRMATION:
        lines.append("Если всё верно, нажмите «Подтвердить»; если ошиблись — «Исправить».")
    elif v.status is Status.REJECTED:
        lines.append("Проверьте и пришлите снова. Помощь: /help")
    return "\n".join(lines)


def confirm_keyboard(receipt: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text="Подтвердить", callback_data=f"cf:{receipt}"),
                InlineKeyboardButton(text="Исправить", callback_data=f"fx:{receipt}"),
            ]
        ]
    )


def menu_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text="📝 Передать показания", callback_data="menu:read"),
                InlineKeyboardButton(text="📜 История", callback_data="menu:hist"),
            ],
            [InlineKeyboardButton(text="➕ Привязать ещё л/с", callback_data="menu:link")],
        ]
    )


def choice_keyboard(items: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    rows = [[InlineKeyboardButton(text=text, callback_data=data)] for text, data in items]
    rows.append([InlineKeyboardButton(text="Отмена", callback_data="cancel")])
    return InlineKeyboardMarkup(inline_keyboard=rows)


class Link(StatesGroup):
    account = State()  # waiting for the account number
    factor = State()  # waiting for the contact, the code from the SMS (or, when enabled, 4 digits)


class Flow(StatesGroup):
    choose_account = State()  # buttons: which linked account (free text or step by step)
    choose_meter = State()  # buttons: which meter of the account
    zones = State()  # buttons: which zone to enter, "Отправить" once all have values
    value = State()  # waiting for the value of data["zone"]


# -- the channel ------------------------------------------------------------------------------


_OUTBOX: ContextVar[list[TelegramMethod[Any]] | None] = ContextVar("telegram_outbox", default=None)
_LINKS: ContextVar[dict[int, list[StoredLink]] | None] = ContextVar("telegram_links", default=None)
_METHODS: dict[str, type[TelegramMethod[Any]]] = {
    m.__api_method__: m for m in (SendMessage, EditMessageText, AnswerCallbackQuery)
}


def _dump_methods(methods: list[TelegramMethod[Any]]) -> str:
    """Bot API calls as JSON; aiogram's `Default` placeholders are left out (they come back)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v is not None and not isinstance(v, Default)}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return orjson.dumps(
        [{"method": m.__api_method__, "params": plain(m.model_dump(warnings=False))} for m in methods]
    ).decode()


def _method_from(item: dict[str, Any]) -> TelegramMethod[Any]:
    return _METHODS[item["method"]].model_validate(item["params"])


async def remember(state: FSMContext, new_state: State | None, data: dict[str, Any]) -> None:
    """Set the conversation's state and data together (one database write)."""
    if isinstance(state.storage, DatabaseStorage):
        await state.storage.set_record(state.key, new_state, data)
    else:
        await state.set_state(new_state)
        await state.set_data(data)


class _Session(AiohttpSession):
    """aiogram's aiohttp session, closed at once (the stock close waits 250 ms for TLS)."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


class ChatLocks:
    """One asyncio.Lock per chat while it has updates in flight: a chat's updates never race."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


def chat_of(update: dict[str, Any]) -> int | None:
    """The chat an update belongs to (for the per-chat lock and the stored row)."""
    for key, value in update.items():
        if not isinstance(value, dict):
            continue
        if key == "callback_query":
            message = value.get("message")
            if isinstance(message, dict) and isinstance(message.get("chat"), dict):
                return _int(message["chat"].get("id"))
            return _int((value.get("from") or {}).get("id"))
        if isinstance(value.get("chat"), dict):
            return _int(value["chat"].get("id"))
        if isinstance(value.get("from"), dict):
            return _int(value["from"].get("id"))
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class TelegramChannel:
    """The bot, its dispatcher and the channel's state, shared by the webhook and the poller."""

    def __init__(
        self,
        config: Config,
        engine: AsyncEngine,
        intake: Intake,
        clock: Clock,
        verifier: Verifier | None = None,
    ) -> None:
        self.config = config
        # The one verification of residents (gateway/verification.py), shared with the cabinet.
        self.verifier = verifier or Verifier(config.verification)
        self.settings: TelegramConfig = config.telegram
        self.engine = engine
        self.intake = intake
        self.clock = clock
        self.tz = ZoneInfo(config.calendar.timezone)
        self.server = TelegramAPIServer.from_base(self.settings.api_base)
        self.bot = Bot(self.settings.token, session=_Session(api=self.server))
        self.db = Db(engine, separate_reader=True)
        self.store = TelegramStore(engine, clock, self.db)
        self.fsm = DatabaseStorage(engine, clock, db=self.db)
        self.dp = Dispatcher(storage=self.fsm, tg=self)
        self.dp.include_router(build_router())
        self.locks = ChatLocks()
        self.handled = 0
        self.redelivered = 0
        self.ignored = 0  # updates of types this bot does not know, acknowledged unhandled
        self.last_update_at: datetime | None = None
        self.last_error: str | None = None
        self.polling_ok = True

    # -- one update ---------------------------------------------------------------------------

    async def process(self, update: dict[str, Any], raw: str) -> Outcome:
        """Handle an update once: its replies are sent, then the update's row is committed with
        the conversation's new state (one transaction) before the update is acknowledged.

        Raises ValidationError when the JSON is not a Telegram Update (nothing is stored then).
        "retry" means not acknowledged: a redelivery sends the replies still unsent (a handler
        that finished never runs again) or, when the handler itself failed, runs it again.
        """
        parsed = Update.model_validate(update, context={"bot": self.bot})
        uid, bot_id = parsed.update_id, self.bot.id
        try:
            parsed.event_type  # noqa: B018 - raises for a type this aiogram does not know
        except UpdateTypeLookupError:
            # Acknowledged, or Telegram would redeliver it (and hold back later updates) forever.
            self.ignored += 1
            log.info("telegram update %s carries no event type this bot knows; ignored", uid)
            return "ignored"
        chat = chat_of(update)
        sender = getattr(getattr(parsed.event, "from_user", None), "id", None)
        if any(not -(2**63) <= i < 2**63 for i in (uid, chat, sender) if isinstance(i, int)):
            # Telegram's ids fit in 52 bits; one that no BIGINT column can hold is not from it.
            self.ignored += 1
            log.info("telegram update %s has an id out of range; ignored", uid)
            return "ignored"
        async with self.locks.hold(chat if chat is not None else ("update", uid)):
            user = getattr(getattr(parsed.event, "from_user", None), "id", None)
            fsm_key = self.fsm.key_name(bot_id, chat, user) if chat is not None and user is not None else None
            seen, links, preloaded = await self.store.prefetch(bot_id, uid, chat, fsm_key)
            self.last_update_at = self.clock()
            if seen is not None and seen.finished:
                self.redelivered += 1
                return "duplicate"
            attempts = (seen.attempts if seen else 0) + 1
            fsm: FsmChanges | None = None
            if seen is not None and seen.status == "handled":
                replies = [_method_from(r) for r in orjson.loads(seen.replies or "[]")]
            else:
                replies = []
                token = _OUTBOX.set(replies)
                cached = _LINKS.set({chat: links} if chat is not None and links is not None else {})
                try:
                    with self.fsm.update_scope(preloaded) as fsm:
                        await self.dp.feed_update(self.bot, parsed, raw_update=raw)
                except Exception as exc:
                    log.exception("telegram update %s failed (attempt %d)", uid, attempts)
                    self.last_error = mask_phones_in(f"{type(exc).__name__}: {exc}")[:2000]
                    status = "received" if attempts < MAX_ATTEMPTS else "failed"
                    await self.store.record(bot_id, uid, chat, raw, status, attempts, error=self.last_error)
                    return "retry" if status == "received" else "failed"
                finally:
                    _OUTBOX.reset(token)
                    _LINKS.reset(cached)
            unsent, error = await self._send_all(replies)
            status = "done" if not unsent else "handled" if attempts < MAX_SEND_ATTEMPTS else "failed"
            left = _dump_methods(unsent) if unsent else None
            if not await self.store.record(bot_id, uid, chat, raw, status, attempts, left, error, fsm):
                self.redelivered += 1  # another delivery of it finished first
                return "duplicate"
            if status != "done":
                self.last_error = error
                return "retry" if status == "handled" else "failed"
            self.handled += 1
            return "done"

    async def _send_all(
        self, replies: list[TelegramMethod[Any]]
    ) -> tuple[list[TelegramMethod[Any]], str | None]:
        """Make the calls in order; on a failure a retry may cure, returns those left."""
        for i, method in enumerate(replies):
            try:
                await self._send(method)
            except (TelegramNetworkError, TelegramServerError, TelegramRetryAfter) as exc:
                log.warning("telegram %s failed: %s", method.__api_method__, exc)
                return replies[i:], f"{type(exc).__name__}: {exc}"[:2000]
        return [], None

    async def _send(self, method: TelegramMethod[Any]) -> None:
        """One Bot API call; a refusal that a retry cannot change (blocked bot, bad request) is logged."""
        try:
            await self.bot(method)
        except (TelegramForbiddenError, TelegramBadRequest, TelegramNotFound) as exc:
            log.warning("telegram %s refused: %s", method.__api_method__, exc)

    # -- replies: queued while an update is handled, sent once they are stored ----------------

    async def call(self, method: TelegramMethod[Any]) -> None:
        outbox = _OUTBOX.get()
        if outbox is None:  # outside an update (e.g. a reminder): at once
            await self._send(method)
        else:
            outbox.append(method)

    async def say(self, chat_id: int, text: str, markup: Any = None) -> None:
        await self.call(SendMessage(chat_id=chat_id, text=text[:4096], reply_markup=markup))

    async def edit(self, chat_id: int, message_id: int, text: str) -> None:
        await self.call(EditMessageText(chat_id=chat_id, message_id=message_id, text=text[:4096]))

    async def answer(self, query: CallbackQuery, text: str | None = None, show_alert: bool = False) -> None:
        await self.call(
            AnswerCallbackQuery(callback_query_id=query.id, text=text, show_alert=show_alert or None)
        )

    async def submit(
        self,
        chat_id: int,
        update_id: int,
        raw: str,
        account: str | None,
        *,
        text: str | None = None,
        values: dict[str, str] | None = None,
        meter: str | None = None,
    ) -> Verdict:
        return await self.intake.submit(
            Submission(
                channel=Channel.TELEGRAM,
                received_at=self.clock(),
                sender=chat_ref(chat_id),  # a keyed hash: the chat id is kept only in its link
                account=account,
                meter_serial=meter,
                text=text,
                values=values or {},
                channel_message_id=str(update_id),
                raw=raw,
            )
        )

    async def answer_verdict(self, chat_id: int, verdict: Verdict, state: FSMContext) -> None:
        held_receipt = verdict.receipt if verdict.status is Status.NEEDS_CONFIRMATION else None
        await remember(state, None, {"held": held_receipt} if held_receipt is not None else {})
        markup = confirm_keyboard(held_receipt) if held_receipt is not None else None
        await self.say(chat_id, render_verdict(verdict, self.tz), markup)

    # -- linking ------------------------------------------------------------------------------

    def chat_rule(self) -> Rule:
        """What one chat may try over all accounts (and how many codes it may ask for)."""
        s = self.settings
        return Rule(2 * s.link_max_failures, s.link_window_minutes * 60)

    def link_keys(self, chat_id: int, account: str, method: str) -> list[tuple[Key, Rule]]:
        """The throttles of one linking attempt (gateway/verification.py), reserved before the
        factor is checked: the chat over all accounts, for the guessable last digits the account
        from any chat, then the account from this chat (the pair a success clears). A shared
        contact is Telegram's own proof of the phone, and a code is void after its own attempts
        from all chats together: a stranger's guessing never slows the holder down."""
        s = self.settings
        cap = s.link_window_minutes * 60
        chat = f"chat:{chat_id}"
        keys = [(Key("telegram", ANY, chat), self.chat_rule())]
        if method == "last4":
            keys.append((Key("telegram", account or "-", ANY), Rule(s.link_max_failures_per_account, cap)))
        keys.append((Key("telegram", account or "-", chat), Rule(s.link_max_failures, cap)))
        return keys

    # -- background ---------------------------------------------------------------------------

    async def _set_commands(self) -> None:
        await self.bot.set_my_commands(
            [
                BotCommand(command="start", description="Начать, привязать л/с"),
                BotCommand(command="reading", description="Передать показания по шагам"),
                BotCommand(command="history", description="Последние показания и их статус"),
                BotCommand(command="link", description="Привязать ещё один л/с"),
                BotCommand(command="unlink", description="Отвязать л/с"),
                BotCommand(command="stop", description="Не присылать напоминания"),
                BotCommand(command="help", description="Как передать показания"),
            ]
        )

    async def register_webhook(self, gateway: Gateway) -> None:
        """Webhook mode: tell Telegram where to send updates (when `webhook_url` is set)."""
        await self.bot.set_webhook(
            url=self.settings.webhook_url,
            secret_token=self.settings.webhook_secret,
            allowed_updates=ALLOWED_UPDATES,
            drop_pending_updates=False,
        )
        await self._set_commands()
        log.info("telegram webhook registered at %s", self.settings.webhook_url)

    async def poll(self, gateway: Gateway) -> None:
        """Polling mode: getUpdates in a loop; a batch is stored and handled before the next
        call confirms it (the offset), so a crash never loses an update."""
        await self.bot.delete_webhook(drop_pending_updates=False)
        await self._set_commands()
        offset = await self.store.next_offset(self.bot.id)
        url = self.server.api_url(self.bot.token, "getUpdates")
        wait = self.settings.poll_timeout_seconds
        backoff = 1.0
        async with aiohttp.ClientSession() as http:
            while True:
                body: dict[str, Any] = {"timeout": wait, "allowed_updates": ALLOWED_UPDATES}
                if offset is not None:
                    body["offset"] = offset
                try:
                    async with http.post(
                        url, json=body, timeout=aiohttp.ClientTimeout(total=wait + 15)
                    ) as resp:
                        answer = orjson.loads(await resp.read())
                    if not isinstance(answer, dict) or not answer.get("ok"):
                        raise RuntimeError(f"getUpdates: {str(answer)[:200]}")
                    updates = answer.get("result") or []
                except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, RuntimeError) as exc:
                    self.polling_ok = False
                    self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                    log.warning("telegram polling: %s; retrying in %.0f s", self.last_error, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                self.polling_ok, backoff = True, 1.0
                if not updates:
                    continue
                outcomes = await asyncio.gather(*(self._polled(u) for u in updates))
                retry = [u["update_id"] for u, o in zip(updates, outcomes, strict=True) if o == "retry"]
                if retry:
                    offset = min(retry)  # fetched again; those handled meanwhile are recognised
                    await asyncio.sleep(1.0)
                else:
                    # An item without an integer update_id is skipped, never the loop's end.
                    ids = [
                        u["update_id"]
                        for u in updates
                        if isinstance(u, dict) and _int(u.get("update_id")) is not None
                    ]
                    offset = max(ids) + 1 if ids else offset

    async def _polled(self, update: Any) -> Outcome:
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            return "failed"
        try:
            return await self.process(update, orjson.dumps(update).decode())
        except ValidationError:
            log.warning("telegram polling: update %s is not a valid Update; skipped", update.get("update_id"))
            return "failed"

    def health(self) -> dict[str, Any]:
        ok = self.polling_ok if self.settings.mode == "polling" else True
        return {
            "status": "ok" if ok else "degraded",
            "mode": self.settings.mode,
            "handled": self.handled,
            "redelivered": self.redelivered,
            "ignored": self.ignored,
            "last_update_at": self.last_update_at.isoformat() if self.last_update_at else None,
            "last_error": self.last_error,
        }

    async def close(self) -> None:
        await self.store.close()
        await self.bot.session.close()
        await self.db.close()


# -- handlers ---------------------------------------------------------------------------------


def _chat(event: Message | CallbackQuery) -> int:
    if isinstance(event, Message):
        return event.chat.id
    if event.message is not None:
        return event.message.chat.id
    return event.from_user.id


async def _links(tg: TelegramChannel, chat_id: int) -> list[StoredLink]:
    """The chat's links (read once per update)."""
    cache = _LINKS.get()
    if cache is None:
        return await tg.store.links(chat_id)
    if chat_id not in cache:
        cache[chat_id] = await tg.store.links(chat_id)
    return cache[chat_id]


async def _linked(tg: TelegramChannel, chat_id: int) -> list[str]:
    """Accounts linked to the chat."""
    return [link.account for link in await _links(tg, chat_id)]


async def _greet(tg: TelegramChannel, chat_id: int, linked: list[str]) -> None:
    await tg.say(
        chat_id,
        f"Здравствуйте! К этому чату привязан{'ы' if len(linked) > 1 else ''} л/с {', '.join(linked)}.\n"
        "Пришлите показание сообщением, например 12345 (день/ночь: Т1 12345 Т2 6789), "
        "или нажмите «Передать показания».",
        menu_keyboard(),
    )


async def _start_link(tg: TelegramChannel, chat_id: int, state: FSMContext, first: bool) -> None:
    await remember(state, Link.account, {})
    intro = (
        "Здравствуйте! Это бот приёма показаний счётчиков электроэнергии.\n"
        if first
        else "Привязка ещё одного лицевого счёта.\n"
    )
    await tg.say(chat_id, intro + ASK_ACCOUNT)


def _factor_keyboard(tg: TelegramChannel) -> ReplyKeyboardMarkup:
    row = [KeyboardButton(text=SHARE_BUTTON, request_contact=True)]
    if tg.verifier.can_send(LINK_CODE):
        row.append(KeyboardButton(text=CODE_BUTTON))
    return ReplyKeyboardMarkup(keyboard=[row], resize_keyboard=True, one_time_keyboard=True)


async def _ask_factor(tg: TelegramChannel, chat_id: int, account: str, state: FSMContext) -> None:
    """The second factor: the same words whether the account exists or not."""
    await remember(state, Link.factor, {"link_account": account})
    text = ASK_FACTOR.format(account=account)
    if tg.verifier.can_send(LINK_CODE):
        text += ASK_CODE
    if tg.verifier.settings.phone_digits:
        text += ASK_DIGITS
    await tg.say(chat_id, text + ".", _factor_keyboard(tg))


async def _send_link_code(tg: TelegramChannel, chat_id: int, state: FSMContext) -> None:
    """A code by SMS to the account's registered phones, in the background; the chat is told the
    same whether the account exists, has a phone, or asked too often."""
    account = str((await state.get_data()).get("link_account") or "")
    if tg.verifier.can_send(LINK_CODE):
        requester = Key("code_send", ANY, f"chat:{chat_id}")
        tg.verifier.send_code_later(tg.db.engine, account, LINK_CODE, requester, tg.chat_rule(), tg.clock())
    s = tg.verifier.settings
    await tg.say(chat_id, CODE_SENT.format(minutes=s.code_minutes, resend=s.code_resend_seconds))


async def _check_factor(
    tg: TelegramChannel, message: Message, state: FSMContext, method: str, proof: str
) -> None:
    """Link when the second factor is right (gateway/verification.py, after the throttles)."""
    chat_id = message.chat.id
    account = str((await state.get_data()).get("link_account") or "")
    keys = tg.link_keys(chat_id, account, method)
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
        await tg.say(
            chat_id,
            f"Слишком много неудачных попыток. Попробуйте ещё раз {verification.wait_text(outcome.wait)} "
            "или позвоните нам.",
            ReplyKeyboardRemove(),
        )
        return
    ok = outcome.ok
    await tg.store.record_attempt(chat_id, account, method, ok)
    if ok:
        await tg.store.link(chat_id, message.from_user.id if message.from_user else None, account, method)
        (_LINKS.get() or {}).pop(chat_id, None)
        await remember(state, None, {})
        await tg.say(chat_id, f"✅ Л/с {account} привязан к этому чату.", ReplyKeyboardRemove())
        await _greet(tg, chat_id, await _linked(tg, chat_id))
        return
    # The same answer whether the account is unknown or the phone differs: nothing to probe.
    await tg.say(chat_id, CODE_FAILED if method == "code" else FACTOR_MISMATCH.format(account=account))


async def _choose_account(
    tg: TelegramChannel, chat_id: int, linked: list[str], state: FSMContext, data: dict[str, Any]
) -> None:
    await remember(state, Flow.choose_account, data)
    await tg.say(
        chat_id,
        "К чату привязано несколько л/с. Выберите, для какого эти показания:",
        choice_keyboard([(f"Л/с {a}", f"a:{a}") for a in linked]),
    )


async def _after_account(
    tg: TelegramChannel, chat_id: int, account: str, state: FSMContext, data: dict[str, Any], update: Update
) -> None:
    """The account is known: choose the meter when the account has several, then go on."""
    data = {**data, "account": account}
    known = next((link.active_meters for link in await _links(tg, chat_id) if link.account == account), None)
    if data.get("purpose") == "text" and (data.get("has_meter") or (known is not None and known <= 1)):
        # The text names its meter, or the account has one: the core resolves (or explains) it.
        await _submit_text(tg, chat_id, state, data, None)
        return
    meters = [m for m in await accounts.meters_of_account(tg.db.reader, account) or [] if m.active]
    if data.get("purpose") == "text" and len(meters) <= 1:
        await _submit_text(tg, chat_id, state, data, None)
        return
    if not meters:
        await remember(state, None, {})
        await tg.say(chat_id, f"У л/с {account} нет действующих счётчиков. Позвоните нам.")
        return
    if len(meters) > 1:
        await remember(state, Flow.choose_meter, data)
        await tg.say(
            chat_id,
            f"У л/с {account} несколько счётчиков. Выберите счётчик:",
            choice_keyboard([(f"Счётчик {m.serial}", f"m:{m.serial}") for m in meters]),
        )
        return
    await _start_values(tg, chat_id, account, meters[0].serial, meters[0].zones, state)


async def _submit_text(
    tg: TelegramChannel, chat_id: int, state: FSMContext, data: dict[str, Any], meter: str | None
) -> None:
    verdict = await tg.submit(
        chat_id,
        int(data["update_id"]),
        str(data["raw"]),
        data.get("account"),
        text=str(data["text"]),
        meter=meter,
    )
    await tg.answer_verdict(chat_id, verdict, state)


def _previous_line(
    zone: str, zones: tuple[str, ...], last: dict[str, accounts.LastValue], tz: ZoneInfo
) -> str:
    found = last.get(zone)
    label = zone_label(zone, zones)
    if found is None:
        return f"{label}: прежних показаний нет"
    return f"{label}: прежнее {num(found.value)} от {day(found.taken_at, tz)}"


async def _start_values(
    tg: TelegramChannel, chat_id: int, account: str, meter: str, zones: tuple[str, ...], state: FSMContext
) -> None:
    """Step by step: show the previous reading, then ask for the value (or the zone first)."""
    data = {"purpose": "guided", "account": account, "meter": meter, "zones": list(zones), "values": {}}
    if len(zones) == 1:
        await remember(state, Flow.value, {**data, "zone": zones[0]})
        last = await accounts.last_values(tg.db.reader, meter)
        await tg.say(
            chat_id,
            f"Л/с {account}, счётчик {meter}.\n{_previous_line(zones[0], zones, last, tg.tz)}.\n"
            "Введите текущее показание, например 12345 или 12345,6:",
        )
        return
    await remember(state, Flow.zones, data)
    await _zone_menu(tg, chat_id, data)


async def _zone_menu(tg: TelegramChannel, chat_id: int, data: dict[str, Any]) -> None:
    zones = tuple(data["zones"])
    values: dict[str, str] = data["values"]
    last = await accounts.last_values(tg.db.reader, data["meter"])
    rows = []
    for zone in zones:
        shown = f"{num(Decimal(values[zone]))} ✓" if zone in values else "—"
        rows.append(
            [InlineKeyboardButton(text=f"{zone_label(zone, zones)}: {shown}", callback_data=f"z:{zone}")]
        )
    if all(z in values for z in zones):
        rows.append([InlineKeyboardButton(text="✅ Отправить", callback_data="send")])
    rows.append([InlineKeyboardButton(text="Отмена", callback_data="cancel")])
    previous = "\n".join(_previous_line(z, zones, last, tg.tz) for z in zones)
    ask = (
        "Все зоны заполнены: проверьте и нажмите «Отправить»."
        if all(z in values for z in zones)
        else "Выберите зону и введите её показание:"
    )
    await tg.say(
        chat_id,
        f"Л/с {data['account']}, счётчик {data['meter']}.\n{previous}\n{ask}",
        InlineKeyboardMarkup(inline_keyboard=rows),
    )


async def _history(tg: TelegramChannel, chat_id: int) -> None:
    linked = await _linked(tg, chat_id)
    if not linked:
        await tg.say(chat_id, LINK_PROMPT)
        return
    parts = []
    for account in linked:
        rows = await accounts.last_readings(tg.db.reader, account, tg.settings.history_limit)
        if not rows:
            parts.append(f"Л/с {account}: показаний ещё нет.")
            continue
        lines = [f"Л/с {account}, последние показания:"]
        for view in rows:
            zones = tuple(view.values)
            values = ", ".join(
                num(v) if z == "T" else f"{zone_label(z, zones)} {num(v)}" for z, v in view.values.items()
            )
            status = HISTORY_STATUS.get(view.status.value, view.status.value)
            if view.status is Status.ACCEPTED:
                status += (
                    f", в расчёте с {day(view.committed_at, tg.tz)}"
                    if view.committed_at is not None
                    else ", ещё не передано в расчёт"
                )
            elif view.status is Status.REJECTED and view.reasons:
                why = next((r for r in view.reasons if r.severity is Severity.REJECT), view.reasons[-1])
                status += f": {why.message_ru}"
            taken = view.taken_at or view.received_at
            lines.append(
                f"{day(taken, tg.tz)} · {view.meter_serial} · {values} кВт·ч — {status} (№ {view.receipt})"
            )
        parts.append("\n".join(lines))
    await tg.say(chat_id, "\n\n".join(parts))


async def _owned(tg: TelegramChannel, chat_id: int, receipt: int) -> tuple[str, str, tuple[str, ...]] | None:
    """Account, meter and zones of a stored reading, if it belongs to an account linked to the chat."""
    for account in await _linked(tg, chat_id):
        view = await accounts.receipt(tg.db.reader, receipt, account=account)
        if view is not None and view.meter_serial is not None:
            meters = await accounts.meters_of_account(tg.db.reader, account) or []
            zones = next((m.zones for m in meters if m.serial == view.meter_serial), tuple(view.values))
            return account, view.meter_serial, zones
    return None


async def _confirm_held(
    tg: TelegramChannel, chat_id: int, receipt: int, state: FSMContext, edit: tuple[int, int] | None
) -> str:
    """The resident vouches for a value that needed confirmation; returns the callback answer."""
    owner = await _owned(tg, chat_id, receipt)
    if owner is None:
        return "Показания не найдены"
    try:
        verdict = await held.confirm(
            tg.engine, tg.config, receipt, f"telegram:{chat_ref(chat_id)}", tg.clock(), account=owner[0]
        )
    except held.NotHeld:
        return "Показания не найдены"
    await remember(state, None, {})
    text = render_verdict(verdict, tg.tz)
    if edit is not None:
        await tg.edit(edit[0], edit[1], text)
    else:
        await tg.say(chat_id, text)
    return "Подтверждено" if verdict.status is Status.ACCEPTED else "Не принято"


async def _correct_held(
    tg: TelegramChannel, chat_id: int, receipt: int, state: FSMContext, edit: tuple[int, int, str] | None
) -> str:
    owner = await _owned(tg, chat_id, receipt)
    if owner is None:
        return "Показания не найдены"
    if edit is not None:
        await tg.edit(edit[0], edit[1], edit[2] + "\n\n✏️ Исправление: введите показание заново.")
    await _start_values(tg, chat_id, *owner, state)
    return "Введите показание заново"


def _edit_target(query: CallbackQuery) -> tuple[int, int, str] | None:
    message = query.message
    if isinstance(message, Message):
        return message.chat.id, message.message_id, message.text or ""
    return None


def build_router() -> Router:
    router = Router(name="telegram")
    private = Router(name="telegram-private")
    private.message.filter(F.chat.type == "private")
    private.callback_query.filter(F.message.chat.type == "private")

    @private.message(CommandStart())
    async def on_start(
        message: Message, state: FSMContext, tg: TelegramChannel, command: CommandObject
    ) -> None:
        chat_id = message.chat.id
        linked = await _linked(tg, chat_id)
        payload = (command.args or "").strip()
        if payload.isdigit() and payload not in linked:
            await _ask_factor(tg, chat_id, payload, state)
            return
        if linked:
            await remember(state, None, {})
            await _greet(tg, chat_id, linked)
            return
        await _start_link(tg, chat_id, state, first=True)

    @private.message(Command("cancel"))
    async def on_cancel(message: Message, state: FSMContext, tg: TelegramChannel) -> None:
        await remember(state, None, {})
        await tg.say(message.chat.id, "Отменено.", ReplyKeyboardRemove())

    @private.message(Command("help"))
    async def on_help(message: Message, tg: TelegramChannel) -> None:
        await tg.say(message.chat.id, HELP)

    @private.message(Command("history"))
    async def on_history(message: Message, tg: TelegramChannel) -> None:
        await _history(tg, message.chat.id)

    @private.message(Command("link"))
    async def on_link(message: Message, state: FSMContext, tg: TelegramChannel) -> None:
        await _start_link(tg, message.chat.id, state, first=False)

    @private.message(Command("unlink"))
    async def on_unlink(message: Message, tg: TelegramChannel) -> None:
        await _unlink_menu(tg, message.chat.id)

    @private.message(Command("stop"))
    async def on_stop(message: Message, tg: TelegramChannel) -> None:
        await _reminders(tg, message.chat.id, False)

    @private.message(Command("remind"))
    async def on_remind(message: Message, tg: TelegramChannel) -> None:
        await _reminders(tg, message.chat.id, True)

    @private.message(Command("reading"))
    async def on_reading(
        message: Message, state: FSMContext, tg: TelegramChannel, event_update: Update
    ) -> None:
        await _begin_guided(tg, message.chat.id, state, event_update)

    @private.message(Link.account, F.text)
    async def on_link_account(message: Message, state: FSMContext, tg: TelegramChannel) -> None:
        number = re.sub(r"[\s-]", "", message.text or "")
        if not re.fullmatch(r"\d{5,12}", number):
            await tg.say(message.chat.id, "Номер л/с — это 5-12 цифр из квитанции. " + ASK_ACCOUNT)
            return
        if number in await _linked(tg, message.chat.id):
            await remember(state, None, {})
            await tg.say(message.chat.id, f"Л/с {number} уже привязан к этому чату.", menu_keyboard())
            return
        await _ask_factor(tg, message.chat.id, number, state)

    @private.message(Link.factor, F.contact)
    async def on_contact(message: Message, state: FSMContext, tg: TelegramChannel) -> None:
        contact = message.contact
        assert contact is not None
        if message.from_user is None or contact.user_id != message.from_user.id:
            await tg.say(message.chat.id, "Нужен ваш собственный номер: нажмите кнопку «Поделиться номером».")
            return
        await _check_factor(tg, message, state, "contact", contact.phone_number)

    @private.message(Link.factor, F.text)
    async def on_factor_text(message: Message, state: FSMContext, tg: TelegramChannel) -> None:
        text = (message.text or "").strip()
        if text == CODE_BUTTON and tg.verifier.can_send(LINK_CODE):
            await _send_link_code(tg, message.chat.id, state)
            return
        typed = re.sub(r"[\s-]", "", text)
        if re.fullmatch(r"\d{6}", typed):
            await _check_factor(tg, message, state, "code", typed)
            return
        if tg.verifier.settings.phone_digits and re.fullmatch(r"\d{4}", typed):
            await _check_factor(tg, message, state, "last4", typed)
            return
        await tg.say(
            message.chat.id,
            "Пришлите 6 цифр кода из SMS"
            + (" или 4 последние цифры телефона" if tg.verifier.settings.phone_digits else "")
            + ", или нажмите «Поделиться номером». Отменить: /cancel",
            _factor_keyboard(tg),
        )

    @private.message(Flow.value, F.text)
    async def on_value(
        message: Message, state: FSMContext, tg: TelegramChannel, event_update: Update, raw_update: str
    ) -> None:
        data = await state.get_data()
        parsed = parse_message(message.text or "")
        if isinstance(parsed, TextCommand):
            await _on_text_command(tg, message.chat.id, parsed, state, event_update)
            return
        if isinstance(parsed, ParseFailure):
            await tg.say(message.chat.id, f"{parsed.message_ru}\nВведите одно число, например 12345,6:")
            return
        zone = str(data["zone"])
        if (
            parsed.account
            or parsed.meter_serial
            or len(parsed.values) != 1
            or parsed.values[0][0] not in (None, zone)
        ):
            await tg.say(message.chat.id, "Введите одно число — показание этой зоны, например 12345,6:")
            return
        entered = {**data["values"], zone: parsed.values[0][1]}
        values = {z: entered[z] for z in data["zones"] if z in entered}
        data = {**data, "values": values}
        zones = tuple(data["zones"])
        if len(zones) == 1:
            verdict = await tg.submit(
                message.chat.id,
                event_update.update_id,
                raw_update,
                str(data["account"]),
                values=values,
                meter=str(data["meter"]),
            )
            await tg.answer_verdict(message.chat.id, verdict, state)
            return
        await remember(state, Flow.zones, data)
        await _zone_menu(tg, message.chat.id, data)

    @private.message(F.text)
    async def on_text(
        message: Message, state: FSMContext, tg: TelegramChannel, event_update: Update, raw_update: str
    ) -> None:
        chat_id = message.chat.id
        text = message.text or ""
        parsed = parse_message(text)
        if isinstance(parsed, TextCommand):
            await _on_text_command(tg, chat_id, parsed, state, event_update)
            return
        if text.startswith("/"):  # a command this bot does not have
            await tg.say(chat_id, HELP)
            return
        linked = await _linked(tg, chat_id)
        if not linked:
            await tg.say(chat_id, LINK_PROMPT)
            return
        data: dict[str, Any] = {
            "purpose": "text",
            "text": text,
            "update_id": event_update.update_id,
            "raw": raw_update,
            "has_meter": isinstance(parsed, ParsedReading) and parsed.meter_serial is not None,
        }
        if isinstance(parsed, ParseFailure):
            # The core explains what it did not understand, like any other verdict.
            await _submit_text(tg, chat_id, state, {**data, "account": linked[0]}, None)
            return
        if parsed.account is not None:
            if parsed.account not in linked:
                await tg.say(
                    chat_id,
                    f"Л/с {parsed.account} не привязан к этому чату. Чтобы передавать по нему показания, "
                    "привяжите его: /link",
                )
                return
            await _after_account(tg, chat_id, parsed.account, state, data, event_update)
            return
        if len(linked) > 1:
            await _choose_account(tg, chat_id, linked, state, data)
            return
        await _after_account(tg, chat_id, linked[0], state, data, event_update)

    @private.message(F.contact)
    async def on_stray_contact(message: Message, tg: TelegramChannel) -> None:
        await tg.say(message.chat.id, "Чтобы привязать л/с, нажмите /link.")

    @private.message()
    async def on_other(message: Message, tg: TelegramChannel) -> None:
        await tg.say(message.chat.id, "Пришлите показание текстом, например 12345. Помощь: /help")

    # -- buttons --------------------------------------------------------------------------------

    @private.callback_query(F.data.startswith("menu:"))
    async def on_menu(
        query: CallbackQuery, state: FSMContext, tg: TelegramChannel, event_update: Update
    ) -> None:
        await tg.answer(query)
        chat_id = _chat(query)
        if query.data == "menu:read":
            await _begin_guided(tg, chat_id, state, event_update)
        elif query.data == "menu:hist":
            await _history(tg, chat_id)
        else:
            await _start_link(tg, chat_id, state, first=False)

    @private.callback_query(Flow.choose_account, F.data.startswith("a:"))
    async def on_pick_account(
        query: CallbackQuery, state: FSMContext, tg: TelegramChannel, event_update: Update
    ) -> None:
        chat_id = _chat(query)
        account = (query.data or "")[2:]
        if account not in await _linked(tg, chat_id):
            await tg.answer(query, "Этот л/с не привязан к чату", show_alert=True)
            return
        await tg.answer(query)
        await _after_account(tg, chat_id, account, state, await state.get_data(), event_update)

    @private.callback_query(Flow.choose_meter, F.data.startswith("m:"))
    async def on_pick_meter(query: CallbackQuery, state: FSMContext, tg: TelegramChannel) -> None:
        chat_id = _chat(query)
        serial = (query.data or "")[2:]
        data = await state.get_data()
        account = str(data.get("account"))
        meters = {m.serial: m for m in await accounts.meters_of_account(tg.db.reader, account) or []}
        if serial not in meters or account not in await _linked(tg, chat_id):
            await tg.answer(query, "Кнопка устарела", show_alert=True)
            return
        await tg.answer(query)
        if data.get("purpose") == "text":
            await _submit_text(tg, chat_id, state, data, serial)
            return
        await _start_values(tg, chat_id, account, serial, meters[serial].zones, state)

    @private.callback_query(Flow.zones, F.data.startswith("z:"))
    async def on_pick_zone(query: CallbackQuery, state: FSMContext, tg: TelegramChannel) -> None:
        chat_id = _chat(query)
        zone = (query.data or "")[2:]
        data = await state.get_data()
        zones = tuple(data.get("zones") or ())
        if zone not in zones:
            await tg.answer(query, "Кнопка устарела", show_alert=True)
            return
        await tg.answer(query)
        await remember(state, Flow.value, {**data, "zone": zone})
        last = await accounts.last_values(tg.db.reader, str(data["meter"]))
        await tg.say(chat_id, f"{_previous_line(zone, zones, last, tg.tz)}.\nВведите показание:")

    @private.callback_query(Flow.zones, F.data == "send")
    async def on_send(
        query: CallbackQuery, state: FSMContext, tg: TelegramChannel, event_update: Update, raw_update: str
    ) -> None:
        chat_id = _chat(query)
        data = await state.get_data()
        values: dict[str, str] = data.get("values") or {}
        if not all(z in values for z in data.get("zones") or ()):
            await tg.answer(query, "Введите показания всех зон", show_alert=True)
            return
        await tg.answer(query)
        verdict = await tg.submit(
            chat_id,
            event_update.update_id,
            raw_update,
            str(data["account"]),
            values=values,
            meter=str(data["meter"]),
        )
        await tg.answer_verdict(chat_id, verdict, state)

    @private.callback_query(F.data == "cancel")
    async def on_cancel_button(query: CallbackQuery, state: FSMContext, tg: TelegramChannel) -> None:
        await remember(state, None, {})
        await tg.answer(query, "Отменено")
        await tg.say(_chat(query), "Отменено.")

    @private.callback_query(F.data.regexp(r"^cf:\d+$"))
    async def on_confirm(query: CallbackQuery, state: FSMContext, tg: TelegramChannel) -> None:
        target = _edit_target(query)
        answer = await _confirm_held(
            tg, _chat(query), int((query.data or "")[3:]), state, target[:2] if target else None
        )
        await tg.answer(query, answer)

    @private.callback_query(F.data.regexp(r"^fx:\d+$"))
    async def on_correct(query: CallbackQuery, state: FSMContext, tg: TelegramChannel) -> None:
        answer = await _correct_held(
            tg, _chat(query), int((query.data or "")[3:]), state, _edit_target(query)
        )
        await tg.answer(query, answer)

    @private.callback_query(F.data.startswith("ul:"))
    async def on_unlink_account(query: CallbackQuery, tg: TelegramChannel) -> None:
        account = (query.data or "")[3:]
        removed = await tg.store.unlink(_chat(query), account)
        (_LINKS.get() or {}).pop(_chat(query), None)
        await tg.answer(query, "Отвязан" if removed else "Уже отвязан")
        if removed:
            await tg.say(_chat(query), f"Л/с {account} отвязан от этого чата.")

    @private.callback_query()
    async def on_stale(query: CallbackQuery, tg: TelegramChannel) -> None:
        await tg.answer(query, "Кнопка устарела: начните заново (/reading)", show_alert=True)

    # Everything else (group chats): handlers of a router run before its sub-routers', so these
    # live in a sibling router included after the private one.
    others = Router(name="telegram-others")

    @others.message()
    async def on_group(message: Message, tg: TelegramChannel) -> None:
        await tg.say(message.chat.id, "Показания принимаются только в личных сообщениях боту.")

    @others.callback_query()
    async def on_group_button(query: CallbackQuery, tg: TelegramChannel) -> None:
        await tg.answer(query)

    router.include_routers(private, others)
    return router


async def _on_text_command(
    tg: TelegramChannel, chat_id: int, command: TextCommand, state: FSMContext, update: Update
) -> None:
    """Whole-message words of the grammar ("помощь", "да", "история", ...)."""
    if command.name == "help":
        await tg.say(chat_id, HELP)
    elif command.name == "history":
        await _history(tg, chat_id)
    elif command.name == "start":
        linked = await _linked(tg, chat_id)
        if linked:
            await _greet(tg, chat_id, linked)
        else:
            await _start_link(tg, chat_id, state, first=True)
    elif command.name == "stop":
        await _reminders(tg, chat_id, False)
    elif command.name == "remind":
        await _reminders(tg, chat_id, True)
    elif command.name in ("confirm", "correct"):
        receipt = (await state.get_data()).get("held")
        if not isinstance(receipt, int):
            await tg.say(chat_id, "Нет показаний, ждущих подтверждения. Пришлите показание, например 12345.")
        elif command.name == "confirm":
            await _confirm_held(tg, chat_id, receipt, state, None)
        else:
            await _correct_held(tg, chat_id, receipt, state, None)


async def _begin_guided(tg: TelegramChannel, chat_id: int, state: FSMContext, update: Update) -> None:
    linked = await _linked(tg, chat_id)
    if not linked:
        await tg.say(chat_id, LINK_PROMPT)
        return
    data = {"purpose": "guided"}
    if len(linked) > 1:
        await _choose_account(tg, chat_id, linked, state, data)
        return
    await _after_account(tg, chat_id, linked[0], state, data, update)


async def _reminders(tg: TelegramChannel, chat_id: int, on: bool) -> None:
    if not await tg.store.set_reminders(chat_id, on):
        await tg.say(chat_id, LINK_PROMPT)
    elif on:
        await tg.say(chat_id, "Напоминания о передаче показаний включены. Отключить: /stop")
    else:
        await tg.say(chat_id, "Напоминания отключены. Включить снова: /remind. Отвязать л/с от чата: /unlink")


async def _unlink_menu(tg: TelegramChannel, chat_id: int) -> None:
    linked = await _linked(tg, chat_id)
    if not linked:
        await tg.say(chat_id, "К этому чату не привязан ни один л/с.")
        return
    await tg.say(
        chat_id,
        "Какой л/с отвязать от этого чата?",
        choice_keyboard([(f"Отвязать л/с {a}", f"ul:{a}") for a in linked]),
    )


# -- reminders ----------------------------------------------------------------------------------


class TelegramNotifier:
    """Reminders to submit readings, to the chats linked to the accounts that have none yet
    (the `Notifier` of adapters/reminders.py); a chat that said "стоп" gets none."""

    channel = "telegram"

    def __init__(self, tg: TelegramChannel) -> None:
        self.tg = tg

    async def contacts(self, engine: AsyncEngine, accounts: Mapping[int, str]) -> dict[str, list[int]]:
        return await self.tg.store.chats_to_remind(list(accounts))

    def text(self, due: DueReminder, account_numbers: list[str]) -> str:
        until = f"{due.window_end:%d.%m}"
        named = ", ".join(account_numbers)
        if due.kind == "last_day" and due.today == due.window_end:
            lead = f"Сегодня последний день приёма показаний за {period_ru(due.period)} (л/с {named})."
        elif due.kind == "last_day":
            lead = f"Показания за {period_ru(due.period)} (л/с {named}) принимаем только до {until}."
        else:
            lead = f"Пора передать показания за {period_ru(due.period)}: л/с {named}, приём до {until}."
        return f"{lead}\nПришлите показание сообщением или нажмите /reading.\nНе напоминать: /stop"

    async def send(self, recipient: str, text: str, markup: Any = None) -> None:
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

    async def close(self) -> None:
        pass  # the bot's session is closed with the application


# -- HTTP and wiring --------------------------------------------------------------------------

TELEGRAM = web.AppKey("telegram", TelegramChannel)


async def webhook(request: web.Request) -> web.Response:
    """Telegram's webhook: 200 once the update is stored and handled (or recognised as seen)."""
    tg = request.app[TELEGRAM]
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), tg.settings.webhook_secret.encode()):
        raise ApiError(401, "unauthorized", f"{SECRET_HEADER} is missing or wrong")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "body_too_large", "the update is too large") from None
    try:
        update = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(update, dict) or _int(update.get("update_id")) is None:
        raise ApiError(400, "bad_update", "the body must be a Telegram Update with an integer update_id")
    try:
        outcome = await tg.process(update, body.decode("utf-8", errors="replace"))
    except ValidationError as exc:
        # It came with the secret and an update_id, so from Telegram: a shape aiogram cannot read
        # (a newer Bot API). Acknowledged, or Telegram would hold back every later update for it.
        tg.ignored += 1
        log.warning(
            "telegram update %s is not a Telegram Update aiogram can read (%s); ignored",
            update["update_id"],
            exc.errors()[0]["msg"],
        )
        return json_response({"ok": True, "outcome": "ignored"})
    if outcome == "retry":  # not acknowledged: Telegram delivers it again
        return error_response(503, "retry_later", "the update could not be handled yet; it is stored")
    return json_response({"ok": True, "outcome": outcome})


def install(gateway: Gateway, app: web.Application) -> None:
    """Add the Telegram channel when `[telegram] enabled`: the webhook route or the poller."""
    settings = gateway.config.telegram
    if not settings.enabled:
        gateway.health_probes["telegram"] = lambda: {"status": "disabled"}
        return
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)  # one INFO line per update otherwise
    tg = TelegramChannel(gateway.config, gateway.engine, gateway.intake, gateway.clock, shared_verifier(app))
    app[TELEGRAM] = tg
    gateway.health_probes["telegram"] = tg.health

    async def close_bot(_app: web.Application) -> None:
        await tg.close()

    app.on_cleanup.append(close_bot)
    if settings.reminders:
        add_notifier(app, TelegramNotifier(tg))
    if settings.mode == "webhook":
        app.router.add_post(WEBHOOK_PATH, webhook)
        if settings.webhook_url:
            gateway.background.append(tg.register_webhook)
    else:
        gateway.background.append(tg.poll)
