"""Sign-in limits under attack, on SQLite and PostgreSQL against a real gateway: concurrent
attempts (each with its own session and CSRF token) get at most the limit checked, in the web
cabinet, on the operators' desk and when linking a Telegram chat; a stranger's failures do not
keep the holder out; argon2 does not stall the event loop; X-Forwarded-For is believed only from
a trusted proxy.

"Checked" is what the gateway wrote to its security log (`signin_attempts`,
`telegram_link_attempts`): one row per attempt whose secret was compared.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.telegram.tables import telegram_link_attempts, telegram_links
from gateway.service import Gateway
from gateway.store.schema_verification import signin_attempts
from gateway.verification import VERIFIER
from tests.adapters.telegram.fake_bot_api import FakeBotApi, message_update
from tests.adapters.telegram.test_conversations import CHAT, telegram_config
from tests.adapters.web.test_cabinet import OPERATOR_PASSWORD, Web, start_web
from tests.conftest import FakeClock

_TOKEN = re.compile(r'name="_csrf" value="([^"]+)"')
CODE = re.compile(r"Код входа в личный кабинет: (\d{6})")


@pytest.fixture
async def web(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Web]:
    w = await start_web(db_url, tmp_path, clock, verification={"code_to_log": True})
    yield w
    await w.close()


async def checked(engine: AsyncEngine, table: Any = signin_attempts, *where: Any) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(table).where(*where)
        return int((await conn.execute(query)).scalar_one())


class Visitor:
    """One attacker's browser: its own cookie jar and CSRF token, from its own address."""

    def __init__(self, base: str, address: str | None = None) -> None:
        self.base = base
        headers = {"X-Forwarded-For": address} if address else {}
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers)
        self.token = ""

    async def open(self, path: str) -> None:
        async with self.http.get(self.base + path) as resp:
            found = _TOKEN.search(await resp.text())
            assert found, path
            self.token = found.group(1)

    async def post(self, path: str, form: dict[str, str]) -> tuple[int, str]:
        async with self.http.post(
            self.base + path, data={**form, "_csrf": self.token}, allow_redirects=False
        ) as resp:
            return resp.status, await resp.text()

    async def close(self) -> None:
        await self.http.close()


async def visitors(base: str, n: int, path: str, addresses: list[str] | None = None) -> list[Visitor]:
    crowd = [Visitor(base, addresses[i] if addresses else None) for i in range(n)]
    for chunk in range(0, n, 100):
        await asyncio.gather(*(v.open(path) for v in crowd[chunk : chunk + 100]))
    return crowd


async def settle(web: Web) -> None:
    """Wait for the code sends started in the background (by the cabinet or Telegram)."""
    assert web.gateway._runner is not None
    verifier = web.gateway._runner.app[VERIFIER]
    while verifier.tasks:
        await asyncio.gather(*list(verifier.tasks))


def codes_in(caplog: pytest.LogCaptureFixture, account: str) -> list[str]:
    return [
        m.group(1)
        for r in caplog.records
        if f"account {account}," in r.getMessage() and (m := CODE.search(r.getMessage()))
    ]


# -- the cabinet ---------------------------------------------------------------------------------


async def test_1000_concurrent_digit_guesses_get_at_most_the_limit_checked(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    w = await start_web(db_url, tmp_path, clock, verification={"phone_digits": True})
    crowd = await visitors(w.base, 1000, "/cabinet/login")
    try:
        guesses = [f"{n:04d}" for n in range(4000, 5000)]  # the right one, 4567, among them
        answers = await asyncio.gather(
            *(
                v.post("/cabinet/login", {"account": "1000001", "phone_digits": g})
                for v, g in zip(crowd, guesses, strict=True)
            )
        )
    finally:
        await asyncio.gather(*(v.close() for v in crowd))
    limit = w.gateway.config.cabinet.max_failures_per_account
    statuses = [s for s, _ in answers]
    assert await checked(w.engine) <= limit
    assert statuses.count(429) >= 1000 - limit and statuses.count(303) <= 1
    assert all("Слишком много неудачных попыток" in t for s, t in answers if s == 429)
    await w.close()


async def test_300_concurrent_code_guesses_from_300_addresses_get_the_codes_attempts(
    web: Web, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    holder = await visitors(web.base, 1, "/cabinet/login")
    await holder[0].post("/cabinet/login", {"account": "1000001"})
    await settle(web)
    (code,) = codes_in(caplog, "1000001")
    # A botnet: every attempt from its own address, all of them with a pending sign-in.
    addresses = [f"198.51.{i // 250}.{i % 250 + 1}" for i in range(300)]
    crowd = await visitors(web.base, 300, "/cabinet/login", addresses)
    try:
        for chunk in range(0, 300, 100):
            await asyncio.gather(
                *(v.post("/cabinet/login", {"account": "1000001"}) for v in crowd[chunk : chunk + 100])
            )
        await settle(web)
        assert codes_in(caplog, "1000001") == [code]  # asking again within a minute sends nothing
        guesses = [f"{(int(code) + 1 + i) % 10**6:06d}" for i in range(299)] + [code]
        answers = await asyncio.gather(
            *(v.post("/cabinet/login/code", {"code": g}) for v, g in zip(crowd, guesses, strict=True))
        )
    finally:
        await asyncio.gather(*(v.close() for v in [*crowd, *holder]))
    attempts = web.gateway.config.verification.code_attempts
    assert await checked(web.engine) == 300
    signed_in = [s for s, _ in answers].count(303)
    assert signed_in <= 1
    # At most `code_attempts` entries were compared with the code; every other was turned down.
    async with web.engine.connect() as conn:
        from gateway.store.schema_verification import signin_codes

        row = (await conn.execute(select(signin_codes.c.attempts, signin_codes.c.used_at))).one()
    assert row.attempts <= attempts
    assert signed_in == (1 if row.used_at is not None else 0)


async def test_the_holder_signs_in_after_a_strangers_failures(
    web: Web, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    stranger = await visitors(web.base, 1, "/cabinet/login", ["203.0.113.5"])
    holder = await visitors(web.base, 1, "/cabinet/login", ["192.0.2.10"])
    try:
        await stranger[0].post("/cabinet/login", {"account": "1000001"})
        await settle(web)
        for n in range(5):
            status, text = await stranger[0].post("/cabinet/login/code", {"code": f"{n:06d}"})
            assert status == 401 and "Код не подходит" in text
        status, text = await stranger[0].post("/cabinet/login/code", {"code": "000009"})
        assert status == 429 and "Слишком много неудачных попыток" in text
        # The stranger voided that code; the holder asks for a new one after a minute and signs in.
        web.clock.advance(seconds=61)
        await holder[0].post("/cabinet/login", {"account": "1000001"})
        await settle(web)
        code = codes_in(caplog, "1000001")[-1]
        status, _ = await holder[0].post("/cabinet/login/code", {"code": code})
        assert status == 303
    finally:
        await stranger[0].close()
        await holder[0].close()


# -- the operators' desk -------------------------------------------------------------------------


async def test_40_concurrent_wrong_passwords_on_the_desk(web: Web) -> None:
    crowd = await visitors(web.base, 40, "/operator/login")
    try:
        answers = await asyncio.gather(
            *(
                v.post("/operator/login", {"login": "ivanova", "password": f"guess-{i}"})
                for i, v in enumerate(crowd)
            )
        )
        # The employee, from the office's address, is not slowed down by any of it.
        desk = await visitors(web.base, 1, "/operator/login", ["10.20.0.5"])
        status, _ = await desk[0].post("/operator/login", {"login": "ivanova", "password": OPERATOR_PASSWORD})
        await desk[0].close()
    finally:
        await asyncio.gather(*(v.close() for v in crowd))
    limit = web.gateway.config.cabinet.max_failures_per_account
    assert await checked(web.engine, signin_attempts, signin_attempts.c.ok.is_(False)) <= limit
    assert [s for s, _ in answers].count(429) >= 40 - limit
    assert status == 303


async def test_healthz_answers_while_100_unknown_logins_hash(web: Web) -> None:
    addresses = [f"198.18.0.{i + 1}" for i in range(100)]  # all of them checked: no throttle in the way
    crowd = await visitors(web.base, 100, "/operator/login", addresses)
    done: list[int] = []
    first = asyncio.Event()

    async def attempt(i: int, v: Visitor) -> None:
        status, _ = await v.post("/operator/login", {"login": f"nobody-{i}", "password": "x"})
        assert status == 401
        done.append(i)
        first.set()

    try:
        logins = asyncio.gather(*(attempt(i, v) for i, v in enumerate(crowd)))
        await first.wait()  # hashing is under way
        async with aiohttp.ClientSession() as http, http.get(web.base + "/healthz") as resp:
            assert resp.status in (200, 503)
            finished_by_then = len(done)
        await logins
    finally:
        await asyncio.gather(*(v.close() for v in crowd))
    assert finished_by_then < 100
    assert await checked(web.engine) == 100


# -- Telegram linking ----------------------------------------------------------------------------


async def test_concurrent_telegram_digit_guesses_get_at_most_the_limit_checked(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    fake = FakeBotApi()
    await fake.start()
    # The guessable digits, when enabled; concurrent codes: tests/adapters/telegram/test_link_code.py.
    config = telegram_config(db_url, tmp_path, fake, {"verification": {"phone_digits": True}})
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    url = f"http://127.0.0.1:{gateway.port}/channels/telegram/webhook"
    headers = {"X-Telegram-Bot-Api-Secret-Token": "test-webhook-secret_1"}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:

            async def deliver(update: dict[str, Any]) -> None:
                async with http.post(url, json=update) as resp:
                    assert resp.status == 200, await resp.text()

            await deliver(message_update(1, CHAT, "/start"))
            await deliver(message_update(2, CHAT, "1000001"))
            guesses = [f"{n:04d}" for n in range(4500, 4600)]  # 4567 among them
            await asyncio.gather(*(deliver(message_update(10 + i, CHAT, g)) for i, g in enumerate(guesses)))
            # Many chats (strangers' accounts) at one resident's account: the account's limit holds.
            chats = [700 + i for i in range(40)]
            for chat in chats:
                await deliver(message_update(1000 + chat, chat, "/start"))
                await deliver(message_update(2000 + chat, chat, "1000002"))
            await asyncio.gather(*(deliver(message_update(3000 + c, c, "0000")) for c in chats))
    finally:
        await gateway.stop()
        await fake.stop()
    s = gateway.config.telegram
    engine = gateway.engine
    # A fresh engine: the gateway's was disposed by stop().
    from gateway.store.database import create_engine

    engine = create_engine(gateway.config.database.url)
    try:
        mine = telegram_link_attempts.c.chat_id == CHAT
        assert 1 <= await checked(engine, telegram_link_attempts, mine) <= s.link_max_failures
        theirs = telegram_link_attempts.c.account == "1000002"
        assert await checked(engine, telegram_link_attempts, theirs) <= s.link_max_failures_per_account
        assert await checked(engine, telegram_links, telegram_links.c.chat_id != CHAT) == 0
    finally:
        await engine.dispose()


# -- the client address --------------------------------------------------------------------------


async def _addresses(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(signin_attempts.c.address).order_by(signin_attempts.c.id))
        return list(rows.scalars())


async def test_x_forwarded_for_only_from_a_trusted_proxy(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    chains = ["203.0.113.7", "6.6.6.6, 203.0.113.8, 10.1.2.3", "garbage, 203.0.113.9"]
    # The peer (127.0.0.1) is not a trusted proxy: the header is ignored, whatever it says.
    w = await start_web(db_url, tmp_path, clock, http={"trusted_proxies": ["10.0.0.0/8"]})
    try:
        for chain in chains:
            c = w.client(chain)
            await c.operator_sign_in("ivanova", "wrong")
        assert await _addresses(w.engine) == ["127.0.0.1"] * 3
    finally:
        await w.close()
    # Trusted: the right-most address that is not a trusted proxy (the client wrote the rest).
    w = await start_web(db_url, tmp_path, clock, http={"trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]})
    try:
        async with w.engine.begin() as conn:
            await conn.execute(signin_attempts.delete())
        for chain in chains:
            await w.client(chain).operator_sign_in("ivanova", "wrong")
        assert await _addresses(w.engine) == ["203.0.113.7", "203.0.113.8", "203.0.113.9"]
    finally:
        await w.close()


async def test_two_gateways_on_one_database_share_the_limit(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    first = await start_web(db_url, tmp_path, clock)
    second = await start_web(db_url, tmp_path, clock)  # another process's engine and connections
    crowds = [await visitors(w.base, 30, "/operator/login") for w in (first, second)]
    try:
        answers = await asyncio.gather(
            *(
                v.post("/operator/login", {"login": "ivanova", "password": f"guess-{i}"})
                for crowd in crowds
                for i, v in enumerate(crowd)
            )
        )
    finally:
        await asyncio.gather(*(v.close() for crowd in crowds for v in crowd))
    try:
        assert await checked(first.engine) <= first.gateway.config.cabinet.max_failures_per_account
        assert [s for s, _ in answers].count(
            429
        ) >= 60 - first.gateway.config.cabinet.max_failures_per_account
    finally:
        await second.close()
        await first.close()


async def test_a_nul_in_the_login_or_account_is_a_failed_sign_in_not_an_error(web: Web) -> None:
    c = web.client("192.0.2.77")
    page = await c.operator_sign_in("iva\x00nova", "x\x00y")
    assert page.status == 401 and "Неверный логин или пароль." in page.text
    await c.get("/cabinet/login")
    page = await c.post("/cabinet/login", {"account": "100\x000001"})
    assert page.status == 200 and page.url.endswith("/cabinet/login/code")
    page = await c.post("/cabinet/login/code", {"code": "12\x003456"})
    assert page.status == 401 and "Код не подходит" in page.text
