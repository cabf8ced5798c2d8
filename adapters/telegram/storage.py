"""The Telegram channel's rows: aiogram's FSM storage on the gateway's database, chat links,
link attempts and the received updates (store before acknowledge, redelivery recognised).

While an update is handled, the conversation's state is read once and its changes are kept in
memory (`DatabaseStorage.update_scope`); they are committed in the same transaction as the
update's row (`TelegramStore.record`), so a redelivered update never meets a conversation that
moved on without it, and a handled update costs one commit besides the intake's. Outside an
update every call is its own short transaction. A conversation survives a restart, and several
gateway processes on one PostgreSQL see the same state. The handlers set a conversation's state
and data together with `remember` (one write).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder, KeyBuilder, StateType, StorageKey
from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from adapters.telegram.tables import telegram_fsm, telegram_link_attempts, telegram_links, telegram_updates
from gateway.group_commit import GroupCommit
from gateway.intake import Clock
from gateway.store.schema import accounts, meters


def _upsert(dialect: str, table: Any) -> Any:
    """INSERT ... ON CONFLICT for the dialect (both have the same construct)."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


@dataclass
class _Record:
    chat_id: int
    state: str | None
    data: dict[str, Any]
    dirty: bool = False


@dataclass
class FsmChanges:
    """The conversation records one update read and changed, until they are committed."""

    records: dict[str, _Record] = field(default_factory=dict)

    def rows(self, now: datetime) -> list[dict[str, Any]]:
        return [
            {
                "key": key,
                "chat_id": r.chat_id,
                "state": r.state,
                "data": orjson.dumps(r.data).decode(),
                "updated_at": now,
            }
            for key, r in self.records.items()
            if r.dirty
        ]


_SCOPE: ContextVar[FsmChanges | None] = ContextVar("telegram_fsm_scope", default=None)


async def write_fsm_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    stmt = _upsert(conn.dialect.name, telegram_fsm)
    stmt = stmt.on_conflict_do_update(
        index_elements=[telegram_fsm.c.key],
        set_={c: stmt.excluded[c] for c in ("chat_id", "state", "data", "updated_at")},
    )
    await conn.execute(stmt, rows)


class Db:
    """The gateway's engine for writes, and one for the channel's reads.

    On SQLite every transaction of the gateway's engine takes the database's one write lock
    (BEGIN IMMEDIATE), and one that finds it taken sleeps in SQLite's busy handler. The channel's
    many small reads (is this update known, the chat's links and conversation, the meters) go
    through a second engine whose statements read without a write lock, which WAL allows beside
    the writer. On PostgreSQL both are the gateway's engine.
    """

    def __init__(self, engine: AsyncEngine, separate_reader: bool = False) -> None:
        self.engine = engine
        self.reader = engine
        if separate_reader and engine.dialect.name == "sqlite":
            self.reader = create_async_engine(engine.url, connect_args={"timeout": 30})

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.reader.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            yield conn

    async def close(self) -> None:
        if self.reader is not self.engine:
            await self.reader.dispose()


async def remember(state: FSMContext, new_state: State | None, data: dict[str, Any]) -> None:
    """Set the conversation's state and data together (one database write)."""
    if isinstance(state.storage, DatabaseStorage):
        await state.storage.set_record(state.key, new_state, data)
    else:
        await state.set_state(new_state)
        await state.set_data(data)


class DatabaseStorage(BaseStorage):
    """aiogram FSM storage in the `telegram_fsm` table: conversations survive restarts."""

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        key_builder: KeyBuilder | None = None,
        db: Db | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.db = db or Db(engine)
        self.key_builder = key_builder or DefaultKeyBuilder(
            prefix="tg", with_bot_id=True, with_business_connection_id=True, with_destiny=True
        )

    @contextmanager
    def update_scope(self, preloaded: dict[str, _Record] | None = None) -> Iterator[FsmChanges]:
        """Within it, reads are cached and writes kept for `TelegramStore.record` to commit."""
        changes = FsmChanges(dict(preloaded or {}))
        token = _SCOPE.set(changes)
        try:
            yield changes
        finally:
            _SCOPE.reset(token)

    def _key(self, key: StorageKey) -> str:
        return self.key_builder.build(key)

    def key_name(self, bot_id: int, chat_id: int, user_id: int) -> str:
        """The record name aiogram's default strategy (user in chat) uses for a private chat."""
        return self._key(StorageKey(bot_id=bot_id, chat_id=chat_id, user_id=user_id))

    async def _load(self, key: StorageKey) -> _Record:
        name = self._key(key)
        scope = _SCOPE.get()
        if scope is not None and name in scope.records:
            return scope.records[name]
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(telegram_fsm.c.state, telegram_fsm.c.data).where(telegram_fsm.c.key == name)
                )
            ).first()
        record = _Record(key.chat_id, row.state if row else None, dict(orjson.loads(row.data)) if row else {})
        if scope is not None:
            scope.records[name] = record
        return record

    async def _store(self, key: StorageKey, record: _Record) -> None:
        record.dirty = True
        scope = _SCOPE.get()
        if scope is not None:
            scope.records[self._key(key)] = record
            return
        async with self.db.write() as conn:
            await write_fsm_rows(conn, FsmChanges({self._key(key): record}).rows(self.clock()))

    async def set_record(self, key: StorageKey, state: StateType, data: Mapping[str, Any]) -> None:
        """State and data at once (aiogram's API sets them one at a time)."""
        value = state.state if isinstance(state, State) else state
        current = await self._load(key)
        if current.state == value and current.data == dict(data):
            return
        await self._store(key, _Record(key.chat_id, value, dict(data)))

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        current = await self._load(key)
        await self.set_record(key, state, current.data)

    async def get_state(self, key: StorageKey) -> str | None:
        return (await self._load(key)).state

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DataNotDictLikeError(f"Data must be a dict or dict-like object, got {type(data).__name__}")
        current = await self._load(key)
        await self.set_record(key, current.state, data)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        return dict((await self._load(key)).data)

    async def close(self) -> None:
        pass  # the engine belongs to the gateway


@dataclass(frozen=True, slots=True)
class _UpdateRow:
    bot_id: int
    update_id: int
    chat_id: int | None
    payload: str
    status: str
    attempts: int
    replies: str | None
    error: str | None
    fsm: FsmChanges | None


@dataclass(frozen=True, slots=True)
class Seen:
    """What the store knows of an update already received."""

    status: str  # "received" (handling failed before), "handled" (replies left to send), "done", "failed"
    attempts: int  # how many times it was taken up
    replies: str | None = None  # JSON list of the Bot API calls still to make ("handled")

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")


@dataclass(frozen=True, slots=True)
class Link:
    account: str
    method: str
    linked_at: datetime
    active_meters: int = 0


class TelegramStore:
    """The channel's own tables (links, attempts, updates), one short transaction per call."""

    def __init__(self, engine: AsyncEngine, clock: Clock, db: Db | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.db = db or Db(engine)
        self._updates = GroupCommit(self._write, "telegram-updates-writer")

    async def prefetch(
        self, bot_id: int, update_id: int, chat_id: int | None, fsm_key: str | None
    ) -> tuple[Seen | None, list[Link] | None, dict[str, _Record]]:
        """What handling an update reads first, in one transaction: whether it was seen, the
        chat's links and its conversation record."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        telegram_updates.c.status, telegram_updates.c.attempts, telegram_updates.c.replies
                    ).where(_update_key(bot_id, update_id))
                )
            ).first()
            seen = None if row is None else Seen(row.status, row.attempts, row.replies)
            if seen is not None and seen.finished or chat_id is None:
                return seen, None, {}
            links = await _links(conn, chat_id)
            records: dict[str, _Record] = {}
            if fsm_key is not None:
                found = (
                    await conn.execute(
                        select(telegram_fsm.c.state, telegram_fsm.c.data).where(telegram_fsm.c.key == fsm_key)
                    )
                ).first()
                records[fsm_key] = _Record(
                    chat_id, found.state if found else None, dict(orjson.loads(found.data)) if found else {}
                )
            return seen, links, records

    # -- updates ------------------------------------------------------------------------------

    async def seen(self, bot_id: int, update_id: int) -> Seen | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        telegram_updates.c.status, telegram_updates.c.attempts, telegram_updates.c.replies
                    ).where(_update_key(bot_id, update_id))
                )
            ).first()
        return None if row is None else Seen(row.status, row.attempts, row.replies)

    async def record(
        self,
        bot_id: int,
        update_id: int,
        chat_id: int | None,
        payload: str,
        status: str,
        attempts: int,
        replies: str | None = None,
        error: str | None = None,
        fsm: FsmChanges | None = None,
    ) -> bool:
        """Commit the update's row with what handling it changed in the conversation, in one
        transaction. False when another delivery of the same update finished first (then
        nothing of this one is kept).

        Rows of concurrent updates share a commit: a writer task takes whatever accumulated
        while the previous commit ran (gateway/group_commit.py)."""
        item = _UpdateRow(bot_id, update_id, chat_id, payload, status, attempts, replies, error, fsm)
        return await self._updates.submit(item)

    async def _write(self, batch: list[_UpdateRow]) -> list[bool]:
        async with self.db.write() as conn:
            return [await self._record_in(conn, item) for item in batch]

    async def _record_in(self, conn: AsyncConnection, item: _UpdateRow) -> bool:
        now = self.clock()
        values: dict[str, Any] = {
            "status": item.status,
            "attempts": item.attempts,
            "replies": item.replies,
            "error": item.error,
        }
        if item.status in ("done", "failed"):
            values["handled_at"] = now
        insert_stmt = (
            _upsert(conn.dialect.name, telegram_updates)
            .values(
                bot_id=item.bot_id,
                update_id=item.update_id,
                chat_id=item.chat_id,
                received_at=now,
                payload=item.payload,
                **values,
            )
            .on_conflict_do_nothing(index_elements=[telegram_updates.c.bot_id, telegram_updates.c.update_id])
        )
        if (await conn.execute(insert_stmt)).rowcount != 1:
            # Seen before: only an unfinished row may move on, and only by one delivery.
            moved = await conn.execute(
                update(telegram_updates)
                .where(
                    _update_key(item.bot_id, item.update_id),
                    telegram_updates.c.status.in_(("received", "handled")),
                    telegram_updates.c.attempts < item.attempts,
                )
                .values(**values)
            )
            if moved.rowcount != 1:
                return False
        if item.fsm is not None:
            await write_fsm_rows(conn, item.fsm.rows(now))
        return True

    async def close(self) -> None:
        """Finish the rows queued, then stop the writer."""
        await self._updates.stop()

    async def next_offset(self, bot_id: int) -> int | None:
        """The getUpdates offset after the last update this bot has stored."""
        async with self.db.read() as conn:
            last = (
                await conn.execute(
                    select(func.max(telegram_updates.c.update_id)).where(telegram_updates.c.bot_id == bot_id)
                )
            ).scalar_one_or_none()
        return None if last is None else int(last) + 1

    # -- links --------------------------------------------------------------------------------

    async def links(self, chat_id: int) -> list[Link]:
        """Accounts linked to the chat, by account number."""
        async with self.db.read() as conn:
            return await _links(conn, chat_id)

    async def link(self, chat_id: int, user_id: int | None, account: str, method: str) -> bool:
        """Link the chat to the account; False when it was linked already."""
        async with self.db.write() as conn:
            account_id = await _account_id(conn, account)
            if account_id is None:
                raise LookupError(account)
            stmt = (
                _upsert(self.engine.dialect.name, telegram_links)
                .values(
                    chat_id=chat_id,
                    account_id=account_id,
                    user_id=user_id,
                    method=method,
                    linked_at=self.clock(),
                )
                .on_conflict_do_nothing(
                    index_elements=[telegram_links.c.chat_id, telegram_links.c.account_id]
                )
            )
            return bool((await conn.execute(stmt)).rowcount)

    async def unlink(self, chat_id: int, account: str) -> bool:
        async with self.db.write() as conn:
            account_id = await _account_id(conn, account)
            if account_id is None:
                return False
            result = await conn.execute(
                delete(telegram_links).where(
                    telegram_links.c.chat_id == chat_id, telegram_links.c.account_id == account_id
                )
            )
            return bool(result.rowcount)

    async def set_reminders(self, chat_id: int, on: bool) -> int:
        """Reminders on or off for every account linked to the chat; how many links changed."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(telegram_links).where(telegram_links.c.chat_id == chat_id).values(reminders=on)
            )
            return int(result.rowcount)

    async def chats_to_remind(self, account_ids: list[int]) -> dict[str, list[int]]:
        """Chats linked to these accounts that take reminders: chat id (text) -> account ids."""
        out: dict[str, list[int]] = {}
        if not account_ids:
            return out
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(telegram_links.c.chat_id, telegram_links.c.account_id)
                .where(telegram_links.c.account_id.in_(account_ids), telegram_links.c.reminders.is_(True))
                .order_by(telegram_links.c.chat_id, telegram_links.c.account_id)
            )
            for chat_id, account_id in rows.all():
                out.setdefault(str(chat_id), []).append(int(account_id))
        return out

    # -- link attempts ------------------------------------------------------------------------

    async def record_attempt(self, chat_id: int, account: str, method: str, ok: bool) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                insert(telegram_link_attempts).values(
                    at=self.clock(), chat_id=chat_id, account=account[:32], method=method, ok=ok
                )
            )


async def _links(conn: AsyncConnection, chat_id: int) -> list[Link]:
    active = (
        select(func.count())
        .where(meters.c.account_id == accounts.c.id, meters.c.active.is_(True))
        .scalar_subquery()
    )
    query = (
        select(accounts.c.number, telegram_links.c.method, telegram_links.c.linked_at, active.label("active"))
        .join(accounts, accounts.c.id == telegram_links.c.account_id)
        .where(telegram_links.c.chat_id == chat_id)
        .order_by(accounts.c.number)
    )
    return [Link(r.number, r.method, r.linked_at, int(r.active)) for r in (await conn.execute(query)).all()]


def _update_key(bot_id: int, update_id: int) -> Any:
    return and_(telegram_updates.c.bot_id == bot_id, telegram_updates.c.update_id == update_id)


async def _account_id(conn: AsyncConnection, account: str) -> int | None:
    found = await conn.execute(select(accounts.c.id).where(accounts.c.number == account))
    value = found.scalar_one_or_none()
    return None if value is None else int(value)
