"""Tables of the one verification of residents and staff (gateway/verification.py): sign-in
attempts, throttles, one-time codes, and the secrets the gateway generates once.

Rate limits are the rows of `signin_throttle`, so they hold across restarts and across several
gateway processes on one database; `signin_attempts` logs every sign-in attempt that was checked
at the web cabinet and the operators' desk (adapters/web/). `web_secrets` keeps the codes' key,
the privacy key (gateway/privacy.py) and the web session key. Nothing here is ever deleted by the
gateway: attempts are the security log of the web surfaces. The web's own tables (sessions, staff)
are in adapters/web/tables.py.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text

from gateway.store.schema import Id, UtcDateTime, metadata

# Every sign-in attempt, successful or not, to the cabinet (scope "account") or the desk
# ("operator"); `address` is the client address the attempt came from.
signin_attempts = Table(
    "signin_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("scope", String(16), nullable=False),  # "account" | "operator"
    Column("subject", String(64), nullable=False),  # the account number or login as typed
    Column("address", String(64), nullable=False),
    Column("ok", Boolean, nullable=False),
    Index("ix_signin_attempts_subject", "scope", "subject", "at"),
    Index("ix_signin_attempts_address", "address", "at"),
)

# Secrets the gateway generates once and keeps, e.g. the session cookie key.
web_secrets = Table(
    "web_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

# Sign-in throttles (gateway/verification.py): one row per (scope, subject, address), changed by
# one conditional UPDATE per attempt, so that concurrent attempts in any number of gateway
# processes cannot pass together. Times are whole seconds since the epoch: the arithmetic on them
# (now + delay) is then the same SQL on SQLite and PostgreSQL.
signin_throttle = Table(
    "signin_throttle",
    metadata,
    Column("scope", String(16), primary_key=True),  # "account", "operator", "telegram", "code_send"
    Column("subject", String(64), primary_key=True),  # account number or login; "*": any
    Column("address", String(80), primary_key=True),  # client address or "chat:<id>"; "*": any
    Column("attempts", Integer, nullable=False),  # attempts since the last success or quiet spell
    Column("delay", Integer, nullable=False),  # seconds the last attempt set before the next one
    Column("next_at", BigInteger, nullable=False),  # no attempt before this second
    Column("last_at", BigInteger, nullable=False),  # the last attempt's second
)

# One-time codes of residents (gateway/verification.py): only a keyed hash (HMAC-SHA256) of the
# code is kept; `purpose` is the door it opens ("cabinet" sign-in, "telegram" linking).
signin_codes = Table(
    "signin_codes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account", String(32), nullable=False),
    Column("purpose", String(16), nullable=False, server_default="cabinet"),
    Column("code_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False),  # wrong entries so far
    Column("used_at", UtcDateTime(), nullable=True),  # signed in with it, or replaced by a newer code
    Column("sent_via", String(64), nullable=False),  # "sms", "telegram", "log": where it went
    Index("ix_signin_codes_account", "account", "id"),
)
