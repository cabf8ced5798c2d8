"""Sign-in limits of the web forms and the client address they are counted against.

- The limits are gateway/verification.py's throttles (reserved before the secret is checked),
  with the numbers of `[cabinet]` for both sites; every checked attempt is also written to
  `signin_attempts`, the security log.
- The client address is the peer, or, when the peer is one of `http.trusted_proxies`, the
  right-most X-Forwarded-For address that is not a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime

from aiohttp import web
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.web.config import CabinetConfig
from gateway.config import Config
from gateway.store.schema_verification import signin_attempts
from gateway.verification import Key, Rule

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# What `cabinet.trust_forwarded_for = true` (deprecated) meant: a proxy on the same host.
_LOCAL_PROXIES = ("127.0.0.1", "::1")


def trusted_networks(config: Config) -> tuple[Network, ...]:
    """`http.trusted_proxies` as networks (the deprecated cabinet key stands for loopback)."""
    items = list(config.http.trusted_proxies)
    if not items and config.section("cabinet", CabinetConfig).trust_forwarded_for:
        items = list(_LOCAL_PROXIES)
    return tuple(ipaddress.ip_network(i.strip(), strict=False) for i in items)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(request: web.Request, trusted: tuple[Network, ...]) -> str:
    """Where a request came from: the peer; behind a trusted proxy, the right-most address of
    X-Forwarded-For that is not itself a trusted proxy (the left part is written by the client
    and proves nothing). aiohttp-remotes' XForwardedStrict answers 400 to every peer that is not
    a proxy (devices and Kannel call the gateway directly), so this is done here, per request."""
    peer = request.remote or "unknown"
    hop = _ip(peer)
    if not trusted or hop is None or not any(hop in n for n in trusted):
        return peer[:64]
    chain = ",".join(request.headers.getall("X-Forwarded-For", []))
    for item in reversed(chain.split(",")[-32:]):
        ip = _ip(item)
        if ip is None:  # garbage in the chain: the last trusted hop is what we know
            break
        if not any(ip in n for n in trusted):
            return str(ip)[:64]
        hop = ip
    return str(hop)[:64]


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable(text: str) -> str:
    """`text` without control characters: a NUL cannot be stored in PostgreSQL's text."""
    return _CONTROL.sub("", text)


def rules(config: CabinetConfig) -> tuple[Rule, Rule]:
    """The throttles of a sign-in form: per account (or login) and address, and per address."""
    cap = config.lockout_minutes * 60
    return Rule(config.max_failures_per_account, cap), Rule(config.max_failures_per_address, cap)


def sign_in_keys(config: CabinetConfig, scope: str, subject: str, address: str) -> list[tuple[Key, Rule]]:
    """What one sign-in attempt reserves: the address over all accounts, then this pair."""
    pair, wide = rules(config)
    return [(Key(scope, "*", address), wide), (Key(scope, subject, address), pair)]


async def record_sign_in(
    engine: AsyncEngine, scope: str, subject: str, address: str, ok: bool, now: datetime
) -> None:
    """Keep one sign-in attempt; the limits are counted from these rows."""
    async with engine.begin() as conn:
        await conn.execute(
            insert(signin_attempts).values(at=now, scope=scope, subject=subject[:64], address=address, ok=ok)
        )
