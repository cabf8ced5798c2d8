"""The Telegram channel: the bot, its dispatcher, and how one update is handled exactly once.

Each update (from the webhook or the poller, webhook.py) goes through `TelegramChannel.process`:
updates of one chat are handled one at a time (`ChatLocks`), the update is stored in
`telegram_updates` and committed with the conversation's new state before it is acknowledged,
and a redelivered update_id gets no second reading and no second reply. The replies a handler
makes are queued in an outbox while it runs, stored with the update, and sent afterwards; a
redelivery after a failed send sends what is left instead of handling the update again.

This is not done with aiogram middlewares: the redelivery check, the lock and the commit wrap
more than the dispatcher (a redelivered update whose replies are stored never reaches it), so
they stay around `Dispatcher.feed_update` here. The handlers are in bot_commands.py, linking.py
and readings.py, each module's on its own aiogram `Router`, included by `routers()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

import orjson
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.default import Default
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.fsm.context import FSMContext
from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage, TelegramMethod
from aiogram.types import CallbackQuery, Message, Update
from aiogram.types.update import UpdateTypeLookupError

from adapters.telegram import bot_commands, linking, readings
from adapters.telegram.config import TelegramConfig
from adapters.telegram.storage import DatabaseStorage, Db, FsmChanges, Link, TelegramStore, remember
from adapters.telegram.texts import confirm_keyboard, render_verdict
from gateway.config import Config
from gateway.grammar import ParsedReading, ParseFailure
from gateway.intake import Clock, Intake
from gateway.model import Channel, Status, Submission, Verdict
from gateway.privacy import chat_ref, mask_phones_in
from gateway.verification import Verifier

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a handler that fails is tried this many times (Telegram redelivers the update)
MAX_SEND_ATTEMPTS = 10  # replies that cannot be sent are tried with this many deliveries
# "ignored": an update of a type aiogram does not know (a newer Bot API): acknowledged, not stored.
Outcome = Literal["done", "duplicate", "retry", "failed", "ignored"]

_OUTBOX: ContextVar[list[TelegramMethod[Any]] | None] = ContextVar("telegram_outbox", default=None)
_LINKS: ContextVar[dict[int, list[Link]] | None] = ContextVar("telegram_links", default=None)
_METHODS: dict[str, type[TelegramMethod[Any]]] = {
    m.__api_method__: m for m in (SendMessage, EditMessageText, AnswerCallbackQuery)
}


def routers() -> Router:
    """Every handler of the bot, on fresh routers (a router belongs to one dispatcher).

    The order is the order of precedence: the commands first, so that a command typed in the
    middle of a step is the command; then the steps of linking and of readings; what is left
    over last. Private chats only; group chats are told so.
    """
    private = Router(name="telegram-private")
    private.message.filter(F.chat.type == "private")
    private.callback_query.filter(F.message.chat.type == "private")
    private.include_routers(
        bot_commands.router(), linking.router(), readings.router(), bot_commands.leftovers()
    )
    # Handlers of a router run before its sub-routers', so group chats get a sibling router.
    root = Router(name="telegram")
    root.include_routers(private, bot_commands.groups())
    return root


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
                return as_int(message["chat"].get("id"))
            return as_int((value.get("from") or {}).get("id"))
        if isinstance(value.get("chat"), dict):
            return as_int(value["chat"].get("id"))
        if isinstance(value.get("from"), dict):
            return as_int(value["from"].get("id"))
    return None


def as_int(value: Any) -> int | None:
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
        self.settings = config.section("telegram", TelegramConfig)
        self.engine = engine
        self.intake = intake
        self.clock = clock
        self.tz = ZoneInfo(config.calendar.timezone)
        self.formats = config.text_formats.formats()  # how residents' texts are read
        self.server = TelegramAPIServer.from_base(self.settings.api_base)
        self.bot = Bot(self.settings.token, session=_Session(api=self.server))
        self.db = Db(engine, separate_reader=True)
        self.store = TelegramStore(engine, clock, self.db)
        self.fsm = DatabaseStorage(engine, clock, db=self.db)
        self.dp = Dispatcher(storage=self.fsm, tg=self)
        self.dp.include_router(routers())
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

    # -- what the handlers share ----------------------------------------------------------------

    @staticmethod
    def chat_id(event: Message | CallbackQuery) -> int:
        """The chat a message or a pressed button is in."""
        if isinstance(event, Message):
            return event.chat.id
        if event.message is not None:
            return event.message.chat.id
        return event.from_user.id

    async def links(self, chat_id: int) -> list[Link]:
        """The chat's links (read once per update)."""
        cache = _LINKS.get()
        if cache is None:
            return await self.store.links(chat_id)
        if chat_id not in cache:
            cache[chat_id] = await self.store.links(chat_id)
        return cache[chat_id]

    async def linked(self, chat_id: int) -> list[str]:
        """Accounts linked to the chat."""
        return [link.account for link in await self.links(chat_id)]

    def links_changed(self, chat_id: int) -> None:
        """The chat was linked or unlinked: read its links again."""
        (_LINKS.get() or {}).pop(chat_id, None)

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
        reading: ParsedReading | ParseFailure | None = None,
    ) -> Verdict:
        return await self.intake.submit(
            Submission(
                channel=Channel.TELEGRAM,
                received_at=self.clock(),
                sender=chat_ref(chat_id),  # a keyed hash: the chat id is kept only in its link
                account=account,
                meter_serial=meter,
                text=text,
                reading=reading,
                values=values or {},
                channel_message_id=str(update_id),
                raw=raw,
            )
        )

    async def answer_verdict(
        self, chat_id: int, verdict: Verdict, state: FSMContext, note: str | None = None
    ) -> None:
        """The verdict as a message; `note` (what became of a photo sent with it) below it."""
        held_receipt = verdict.receipt if verdict.status is Status.NEEDS_CONFIRMATION else None
        await remember(state, None, {"held": held_receipt} if held_receipt is not None else {})
        markup = confirm_keyboard(held_receipt) if held_receipt is not None else None
        text = render_verdict(verdict, self.tz)
        await self.say(chat_id, f"{text}\n\n{note}" if note else text, markup)

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
