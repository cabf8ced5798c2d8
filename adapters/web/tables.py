"""Tables of the web cabinet and the operators' desk (declared as `meter_gateway.tables`).

- `web_sessions`: one row per signed-in session (adapters/web/sessions.py); the encrypted cookie
  carries its id, and signing out marks it revoked, so a copied cookie is worthless after sign-out.
- `operators`: staff added with `meter-gateway operator add` (adapters/web/commands.py).

Nothing here is ever deleted by the gateway: sessions are part of the security log of the web
surfaces, with `signin_attempts` (gateway/store/schema_verification.py).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, String, Table, Text

from gateway.store.schema import Id, UtcDateTime, metadata

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
