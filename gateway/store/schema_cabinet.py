"""Tables of the web cabinet and the operators' desk: sign-in attempts, sessions, staff, secrets.

Rate limits are counted from `signin_attempts`, so they hold across restarts and across several
gateway processes on one database. Nothing here is ever deleted by the gateway: attempts and
sessions are the security log of the web surfaces.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, String, Table, Text

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

# One row per signed-in session; the encrypted cookie carries its id, and signing out marks it
# revoked, so a copied cookie is worthless after sign-out.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", String(43), primary_key=True),
    Column("scope", String(16), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("address", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
)

# Staff added with `meter-gateway operator add` (those in the configuration file are not stored).
operators = Table(
    "operators",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("login", String(64), nullable=False, unique=True),
    Column("name", String(120), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

# Secrets the gateway generates once and keeps, e.g. the session cookie key.
web_secrets = Table(
    "web_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
