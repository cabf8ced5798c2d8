"""Personal data: what of a sender's identity may be stored in readings and written to logs.

Phones and Telegram chat ids are kept at rest as keyed hashes (HMAC-SHA256) wherever the full
value is not needed to answer (the SMS reply log, readings' sources): `keyed_hash` is the one
function for it. Its key is `[privacy] secret`, or one generated on first start and kept in the
database (`web_secrets`, name "privacy_key"); `prepare` loads it when the gateway and its intake
start, before anything is hashed, and leaves it in `config.privacy.secret`, so the intake's
writer process, started with that configuration, hashes with the same key (`gateway.decide`).
A secret kept only in the database lets whoever copies the database reverse the hashes of
phones by trying every number; a configured secret kept elsewhere does not.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import TYPE_CHECKING

from gateway import plugins

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from gateway.config import Config, PrivacyConfig

_PHONE = re.compile(r"\+?\d[\d\s()-]{8,}\d")


def normalize_phone(phone: str) -> str:
    """'8 (916) 123-45-67' -> '+79161234567' (Russian numbers; others keep their digits)."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 11 and digits[0] == "8":
        digits = "7" + digits[1:]
    elif len(digits) == 10 and digits[0] == "9":
        digits = "7" + digits
    return "+" + digits if digits else ""


def mask_phone(phone: str) -> str:
    """'+79161234567' -> '+7 9** ***-**-**': the country and the first digit, nothing else.

    The last digits of a registered phone are a sign-in factor (Telegram linking, the cabinet's
    optional `verification.phone_digits`), so no mask on a page, in the API or in a log shows them."""
    p = normalize_phone(phone)
    if len(p) == 12 and p.startswith("+7"):
        return f"+7 {p[2]}** ***-**-**"
    if len(p) < 7:
        return "*" * len(p)
    return p[:2] + "*" * (len(p) - 2)


def mask_phones_in(text: str) -> str:
    """Mask every phone-looking number in free text (log lines)."""
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


# -- keyed hashes ------------------------------------------------------------------------------

SECRET_NAME = "privacy_key"
_key: bytes | None = None


class KeyNotLoaded(RuntimeError):
    """A keyed hash was asked for before the gateway loaded its secret."""


def use_secret(secret: str) -> None:
    """Hash with this secret from now on (once at start-up, in every process that hashes)."""
    global _key
    if not secret:
        raise ValueError("the privacy secret is empty")
    _key = secret.encode()


def keyed_hash(value: str) -> str:
    """HMAC-SHA256 of `value` under the gateway's secret, 64 hex digits."""
    if _key is None:
        raise KeyNotLoaded("privacy secret not loaded: call privacy.use_secret() at start-up")
    return hmac.new(_key, value.encode(), hashlib.sha256).hexdigest()


def phone_hash(phone: str) -> str:
    """The stored identity of a phone: the keyed hash of its normalised form."""
    return keyed_hash(normalize_phone(phone))


def chat_ref(chat_id: int | str) -> str:
    """A Telegram chat as stored with readings: '#' and 16 hex digits of its keyed hash.

    Enough to tell chats apart and to find a chat's readings again (`privacy report`); the chat
    id itself stays only where messages are sent to it (the chat's links and conversation).
    """
    return "#" + keyed_hash(f"telegram:{chat_id}")[:16]


def normalize_email(address: str) -> str:
    """'Ivan.Petrov@Mail.RU ' -> 'ivan.petrov@mail.ru': the form the registry keeps and matches.

    The local part is folded too: no Russian mail service tells addresses apart by case, and a
    resident who types a capital letter must still be recognised."""
    return address.strip().lower()


def email_ref(address: str) -> str:
    """An e-mail sender as stored with readings: '#' and 16 hex digits of its keyed hash (as a
    Telegram chat): tells senders apart and finds their readings again, reveals no address."""
    return "#" + keyed_hash(f"mail:{normalize_email(address)}")[:16]


def mask_email(address: str) -> str:
    """'ivan.petrov@mail.ru' -> 'i***@mail.ru': for logs."""
    local, _, domain = normalize_email(address).partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


async def prepare(engine: AsyncEngine, config: Config, now: datetime) -> None:
    """Load the secret and hash with it; the configuration carries it to processes started from it."""
    secret = await load_secret(engine, config.privacy, now)
    use_secret(secret)
    config.privacy.secret = secret
    for module in plugins.privacy_modules():  # each door's start-up work on its data (gateway/plugins.py)
        door_prepare = getattr(module, "prepare", None)
        if door_prepare is not None:
            await door_prepare(engine)


async def load_secret(engine: AsyncEngine, config: PrivacyConfig, now: datetime) -> str:
    """The secret of the keyed hashes: configured, or generated once and kept in the database."""
    from sqlalchemy import insert, select
    from sqlalchemy.exc import IntegrityError

    from gateway.store.schema_verification import web_secrets

    if config.secret:
        return config.secret
    query = select(web_secrets.c.value).where(web_secrets.c.name == SECRET_NAME)
    async with engine.connect() as conn:
        found = (await conn.execute(query)).scalar_one_or_none()
    if found is not None:
        return str(found)
    secret = secrets.token_urlsafe(32)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(web_secrets).values(name=SECRET_NAME, value=secret, created_at=now))
        return secret
    except IntegrityError:  # another gateway process made it first: use theirs
        async with engine.connect() as conn:
            return str((await conn.execute(query)).scalar_one())
