"""Tables of the Telegram channel: which chats may act for which accounts, the bot's conversation
state, every update received (for store-before-acknowledge and redelivery), and link attempts;
declared to the core in pyproject.toml (`meter_gateway.tables`).

Everything a conversation needs lives here, not in the process: a gateway restarted between two
steps of a conversation continues it, and several gateways on one PostgreSQL share it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Index, Integer, String, Table, Text, text

from gateway.store.schema import Id, UtcDateTime, metadata

# A chat linked to an account after the second factor was shown (contact or last 4 digits of the
# registered phone). A chat may link several accounts; an account may be linked to several chats.
telegram_links = Table(
    "telegram_links",
    metadata,
    Column("chat_id", BigInteger, primary_key=True, autoincrement=False),
    Column("account_id", Id, ForeignKey("accounts.id"), primary_key=True, autoincrement=False),
    Column("user_id", BigInteger, nullable=True),  # the Telegram user who linked it
    Column("method", String(16), nullable=False),  # "contact" | "code" | "last4" | "office"
    Column("linked_at", UtcDateTime(), nullable=False),
    Column("reminders", Boolean, nullable=False, default=True),  # "стоп" turns them off for the chat
)

# Every attempt to link, kept: failures in a window limit further attempts per chat and per account.
telegram_link_attempts = Table(
    "telegram_link_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("chat_id", BigInteger, nullable=False),
    Column("account", String(32), nullable=False),  # as typed
    Column("method", String(16), nullable=False),
    Column("ok", Boolean, nullable=False),
    Index("ix_telegram_link_attempts_chat", "chat_id", "at"),
    Index("ix_telegram_link_attempts_account", "account", "at"),
)

# aiogram's FSM storage: the state and data of one conversation key (bot, chat, user, ...).
telegram_fsm = Table(
    "telegram_fsm",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("chat_id", BigInteger, nullable=False, index=True),
    Column("state", String(128), nullable=True),
    Column("data", Text, nullable=False),  # JSON object
    Column("updated_at", UtcDateTime(), nullable=False),
)

# Every update, stored (committed) before the webhook answers 200 or the next getUpdates
# confirms it; a redelivered update_id is recognised here and gets no second reply. The replies a
# handler made are stored before they are sent, so a redelivery after a failed send sends what is
# left instead of handling the update again.
telegram_updates = Table(
    "telegram_updates",
    metadata,
    Column("bot_id", BigInteger, primary_key=True, autoincrement=False),
    Column("update_id", BigInteger, primary_key=True, autoincrement=False),
    Column("chat_id", BigInteger, nullable=True),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("payload", Text, nullable=False),  # the update JSON as received
    # "received" -> "handled" (the replies are stored, being sent) -> "done"; or "failed"
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("replies", Text, nullable=True),  # JSON list of Bot API calls still to make
    Column("handled_at", UtcDateTime(), nullable=True),
    Column("error", Text, nullable=True),
)

# Finished updates whose JSON is not purged yet (privacy.py's `purge`), as a partial index.
UPDATES_UNPURGED = "payload <> ''"
Index(
    "ix_telegram_updates_unpurged",
    telegram_updates.c.received_at,
    sqlite_where=text(UPDATES_UNPURGED),
    postgresql_where=text(UPDATES_UNPURGED),
)
