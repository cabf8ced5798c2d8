"""Staff passwords and the desk's sign-in check: argon2 hashes (or `scrypt$...` from hashlib),
verified in worker threads, a few at a time, so that the event loop keeps serving while they run;
employees from `[operators] users` first, then the `operators` table."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.web.config import OperatorsConfig
from adapters.web.tables import operators
from gateway.config import Config

_hasher = PasswordHasher()
# Verified against when the login is unknown, so that unknown and known logins take as long.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
# argon2 takes tens of milliseconds and 64 MiB each: two at a time in their own threads. More
# attempts queue here instead of stalling the event loop or exhausting memory. (An executor, not
# an asyncio.Semaphore: it belongs to no event loop, and the module outlives any one loop.)
_HASHING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


async def verify_password_off_loop(stored: str, password: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(_HASHING, verify_password, stored, password)


def hash_password(password: str) -> str:
    """An argon2id hash for `[operators] users` or the operators table."""
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """Check a password against an argon2 hash or `scrypt$n$r$p$salt_b64$hash_b64`."""
    if stored.startswith("scrypt$"):
        try:
            _, n, r, p, salt, digest = stored.split("$")
            expected = base64.b64decode(digest)
            got = hashlib.scrypt(
                password.encode(),
                salt=base64.b64decode(salt),
                n=int(n),
                r=int(r),
                p=int(p),
                dklen=len(expected),
                maxmem=256 * 1024 * 1024,
            )
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(got, expected)
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class Employee:
    login: str
    name: str


async def authenticate_operator(
    engine: AsyncEngine, config: Config, login: str, password: str
) -> Employee | None:
    """The employee with this login and password: configured users first, then the operators table."""
    stored: tuple[str, str] | None = None
    for user in config.section("operators", OperatorsConfig).users:
        if user.login == login:
            stored = (user.name, user.password_hash)
            break
    if stored is None and login:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(operators.c.name, operators.c.password_hash).where(
                        operators.c.login == login, operators.c.active
                    )
                )
            ).first()
        if row is not None:
            stored = (row.name, row.password_hash)
    if stored is None:
        await verify_password_off_loop(_DUMMY_HASH, password)
        return None
    return Employee(login, stored[0]) if await verify_password_off_loop(stored[1], password) else None


async def add_operator(engine: AsyncEngine, login: str, name: str, password: str, now: datetime) -> bool:
    """Add an employee (or replace the name and password of an existing one); True if added."""
    hashed = hash_password(password)
    async with engine.begin() as conn:
        exists = (await conn.execute(select(operators.c.id).where(operators.c.login == login))).first()
        if exists is not None:
            await conn.execute(
                update(operators)
                .where(operators.c.login == login)
                .values(name=name, password_hash=hashed, active=True)
            )
            return False
        await conn.execute(
            insert(operators).values(
                login=login, name=name, password_hash=hashed, active=True, created_at=now
            )
        )
        return True
