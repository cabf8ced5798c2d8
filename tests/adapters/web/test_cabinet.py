"""The residents' web cabinet over real HTTP on both databases: sign-in, limits, CSRF, isolation.

The browser walk-through is in test_cabinet_browser.py; these tests drive the same pages with a
plain HTTP client (cookies kept) so they run on SQLite and PostgreSQL and can look at the store.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.web.charts import bar_chart, nice_ceiling
from adapters.web.config import OperatorUser
from adapters.web.tables import web_sessions
from gateway import account_views
from gateway.config import ConfigError, RuleThresholds, load_config
from gateway.model import Channel, RuleGroup, Status, Submission
from gateway.service import Gateway
from gateway.store.schema import accounts as accounts_table
from gateway.store.schema import inbound, readings
from gateway.store.schema_verification import signin_attempts, signin_throttle, web_secrets
from gateway.validation.context import MeterInfo, ZoneState
from tests.conftest import FakeClock, make_config

SIGN_IN_FAILED = "Неверный номер лицевого счёта или цифры телефона"
OPERATOR_PASSWORD = "верный-пароль-42"
# A cheap argon2 hash (the parameters travel in the hash): tests sign in often.
OPERATOR = OperatorUser(
    login="ivanova",
    name="Иванова Анна Петровна",
    password_hash=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(OPERATOR_PASSWORD),
)
_TOKEN = re.compile(r'name="_csrf" value="([^"]+)"')
_NONCE = re.compile(r'name="nonce" value="([^"]+)"')


@dataclass
class Page:
    status: int
    text: str
    url: str

    def token(self) -> str:
        found = _TOKEN.search(self.text)
        assert found, self.text[:500]
        return found.group(1)

    def nonce(self) -> str:
        found = _NONCE.search(self.text)
        assert found, self.text[:500]
        return found.group(1)


@dataclass
class Client:
    """A browser without a browser: keeps cookies, reads the CSRF token from the last page."""

    base: str
    http: aiohttp.ClientSession
    last: Page | None = None

    async def get(self, path: str) -> Page:
        async with self.http.get(self.base + path) as resp:
            self.last = Page(resp.status, await resp.text(), str(resp.url))
        return self.last

    async def post(self, path: str, data: dict[str, str], csrf: bool = True) -> Page:
        form = dict(data)
        if csrf and "_csrf" not in form and self.last is not None:
            form["_csrf"] = self.last.token()
        async with self.http.post(self.base + path, data=form) as resp:
            self.last = Page(resp.status, await resp.text(), str(resp.url))
        return self.last

    async def sign_in(self, account: str, digits: str) -> Page:
        await self.get("/cabinet/login")
        return await self.post("/cabinet/login", {"account": account, "phone_digits": digits})

    async def operator_sign_in(self, login: str, password: str) -> Page:
        await self.get("/operator/login")
        return await self.post("/operator/login", {"login": login, "password": password})


@dataclass
class Web:
    gateway: Gateway
    base: str
    clock: FakeClock
    clients: list[Client] = field(default_factory=list)

    @property
    def engine(self) -> AsyncEngine:
        return self.gateway.engine

    def client(self, address: str | None = None) -> Client:
        headers = {"X-Forwarded-For": address} if address else {}
        c = Client(
            self.base, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers)
        )
        self.clients.append(c)
        return c

    async def close(self) -> None:
        for c in self.clients:
            await c.http.close()
        await self.gateway.stop()

    async def submit(self, account: str, values: dict[str, str], channel: Channel = Channel.CABINET) -> Any:
        """A reading straight into the intake, as if sent earlier through some channel."""
        return await self.gateway.intake.submit(
            Submission(channel, self.clock(), "seed", account=account, values=values)
        )

    async def seed_history(self, account: str, *values: dict[str, str]) -> None:
        """Readings a month apart ending a month before the clock (about 10 kWh a day)."""
        now = self.clock.now
        self.clock.now = datetime(2026, 9, 15, 9, 0, tzinfo=UTC)
        for v in values:
            verdict = await self.submit(account, v)
            assert verdict.status is Status.ACCEPTED, verdict
            self.clock.now = self.clock.now.replace(month=self.clock.now.month + 1)
        self.clock.now = now


async def start_web(db_url: str, tmp_path: Path, clock: FakeClock, **sections: dict[str, object]) -> Web:
    # The requests come from 127.0.0.1, a trusted proxy here: X-Forwarded-For names the client.
    # These tests sign in with the optional phone digits; test_signin_code.py has the code.
    sections.setdefault("http", {"trusted_proxies": ["127.0.0.1"]})
    sections.setdefault("verification", {"phone_digits": True})
    sections.setdefault("operators", {"users": [OPERATOR]})
    gateway = Gateway(make_config(db_url, tmp_path, **sections), clock=clock)
    await gateway.start()
    return Web(gateway, f"http://127.0.0.1:{gateway.port}", clock)


@pytest.fixture
async def web(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Web]:
    w = await start_web(db_url, tmp_path, clock)
    yield w
    await w.close()


async def _count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _session_keys(engine: AsyncEngine) -> int:
    """Generated session keys (web_secrets also keeps the codes' and the privacy key)."""
    query = select(func.count()).where(web_secrets.c.name == "session_key")
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


# -- signing in ------------------------------------------------------------------------------


async def test_sign_in_wrong_then_right_then_out(web: Web) -> None:
    c = web.client("10.0.0.1")
    page = await c.get("/cabinet/")
    assert page.url.endswith("/cabinet/login") and 'lang="ru"' in page.text
    # Wrong digits, an unknown account and an account without a phone all get the same answer.
    for account, digits in (("1000001", "0000"), ("9999999", "4567"), ("1000004", "4567"), ("1000001", "45")):
        page = await c.sign_in(account, digits)
        assert page.status == 401 and SIGN_IN_FAILED in page.text and 'role="alert"' in page.text
    page = await c.sign_in("1000001", "4567")
    assert page.status == 200 and page.url.endswith("/cabinet/")
    assert "Лицевой счёт <b>1000001</b>, ул. Ленина 1-1" in page.text
    assert 'inputmode="decimal"' in page.text and '<label for="m1-1">' in page.text
    # Either phone of an account with two works; spaces and dashes in the account are ignored.
    assert (await web.client().sign_in(" 1000003 ", "2233")).url.endswith("/cabinet/")

    stolen = {m.key: m.value for m in c.http.cookie_jar}
    assert "mg_cabinet" in stolen
    page = await c.post("/cabinet/logout", {})
    assert page.url.endswith("/cabinet/login") and "Вы вышли" in page.text
    assert (await c.get("/cabinet/")).url.endswith("/cabinet/login")
    # A copy of the cookie taken before signing out is worthless afterwards.
    replay = web.client()
    replay.http.cookie_jar.update_cookies(stolen, aiohttp.helpers.URL(web.base + "/cabinet/"))
    assert (await replay.get("/cabinet/")).url.endswith("/cabinet/login")
    async with web.engine.connect() as conn:
        rows = (await conn.execute(select(web_sessions.c.subject, web_sessions.c.revoked_at))).all()
        attempts = (await conn.execute(select(signin_attempts.c.ok))).scalars().all()
    assert sorted((s, r is not None) for s, r in rows) == [("1000001", True), ("1000003", False)]
    assert attempts.count(False) == 4 and attempts.count(True) == 2
    # `privacy report` (the door's report_lines): the account's attempts, sessions and codes.
    from adapters.web import privacy as web_privacy

    async with web.engine.connect() as conn:
        account_id = (
            await conn.execute(select(accounts_table.c.id).where(accounts_table.c.number == "1000001"))
        ).scalar_one()
        lines = await web_privacy.report_lines(conn, account_id, [])
    assert lines[1:4] == [
        "Cabinet sign-in records:",
        "  sign-in attempts: 3 (1 successful), last 2026-11-17 09:00 UTC",
        "  sessions: 1 (0 not signed out)",
    ]


async def test_rate_limits_hold_per_account_and_address_and_per_address(web: Web) -> None:
    limits = web.gateway.config.cabinet
    attacker = web.client("10.0.0.66")
    for _ in range(limits.max_failures_per_account):
        assert (await attacker.sign_in("1000001", "1111")).status == 401
    # The attacker's address waits now, even with the right digits ...
    page = await attacker.sign_in("1000001", "4567")
    assert page.status == 429 and "Слишком много неудачных попыток" in page.text
    assert "через 2 секунды" in page.text
    # ... the holder at their own address does not.
    assert (await web.client("10.0.0.2").sign_in("1000001", "4567")).status == 200
    web.clock.advance(seconds=3)
    assert (await attacker.sign_in("1000001", "1111")).status == 401
    page = await attacker.sign_in("1000001", "1111")  # the wait doubles
    assert page.status == 429 and "через 4 секунды" in page.text

    # One address trying many accounts is stopped too (failures spread over accounts).
    sprayer = web.client("10.0.0.99")
    accounts_tried = [f"10000{n:02d}" for n in range(10, 10 + limits.max_failures_per_address)]
    for number in accounts_tried:
        assert (await sprayer.sign_in(number, "0000")).status == 401
    assert (await sprayer.sign_in("1000005", "2233")).status == 429
    web.clock.advance(seconds=3)
    assert (await sprayer.sign_in("1000005", "2233")).status == 200


async def test_success_clears_the_pair_but_not_the_address_count(web: Web) -> None:
    c = web.client("10.0.0.7")
    for _ in range(4):
        assert (await c.sign_in("1000001", "1111")).status == 401
    assert (await c.sign_in("1000001", "4567")).status == 200
    for _ in range(5):  # the account from this address starts over after the success
        assert (await c.sign_in("1000001", "1111")).status == 401
    assert (await c.sign_in("1000001", "4567")).status == 429
    async with web.engine.connect() as conn:
        rows = (await conn.execute(select(signin_throttle))).all()
    counts = {(r.subject, r.address): r.attempts for r in rows if r.scope == "account"}
    # The address counts every attempt, the refused one too: it is reserved before the pair.
    assert counts == {("*", "10.0.0.7"): 11, ("1000001", "10.0.0.7"): 5}


# -- CSRF and isolation ----------------------------------------------------------------------


async def test_forms_without_the_csrf_token_are_refused(web: Web) -> None:
    c = web.client()
    await c.get("/cabinet/login")
    page = await c.post("/cabinet/login", {"account": "1000001", "phone_digits": "4567"}, csrf=False)
    assert page.status == 403 and "Форма устарела" in page.text
    page = await c.post("/cabinet/login", {"account": "1000001", "phone_digits": "4567", "_csrf": "forged"})
    assert page.status == 403
    assert (await c.sign_in("1000001", "4567")).status == 200
    home = c.last
    assert home is not None
    page = await c.post("/cabinet/meters/M-1", {"v_T": "1234", "nonce": home.nonce()}, csrf=False)
    assert page.status == 403
    # A cross-site form carries the victim's cookie but not the token; an Origin of another site is refused too.
    async with c.http.post(
        web.base + "/cabinet/meters/M-1",
        data={"v_T": "1234", "_csrf": home.token()},
        headers={"Origin": "https://evil.example"},
    ) as resp:
        assert resp.status == 403
    assert await _count(web.engine, inbound) == 0
    page = await c.post("/cabinet/meters/M-1", {"v_T": "1234", "nonce": home.nonce(), "_csrf": home.token()})
    assert page.status == 200 and "Показания приняты" in page.text
    assert await _count(web.engine, inbound) == 1


async def test_another_accounts_data_cannot_be_reached_by_changing_an_id(web: Web) -> None:
    await web.seed_history("1000001", {"T": "1000"}, {"T": "1300"})
    theirs = await web.submit("1000001", {"T": "2500"})  # unusual: waits for confirmation
    assert theirs.status is Status.NEEDS_CONFIRMATION
    mine = web.client()
    assert (await mine.sign_in("1000002", "4568")).status == 200
    page = await mine.get(f"/cabinet/receipts/{theirs.receipt}")
    assert page.status == 404 and "2 500" not in page.text and "1000001" not in page.text
    assert (await mine.get("/cabinet/receipts/999999")).status == 404
    await mine.get("/cabinet/")
    assert (await mine.post(f"/cabinet/receipts/{theirs.receipt}/confirm", {})).status == 404
    await mine.get("/cabinet/")
    assert (await mine.post("/cabinet/meters/M-1", {"v_T": "1400"})).status == 404
    history = await mine.get("/cabinet/history")
    assert "M-1" not in history.text and "Показаний пока нет" in history.text
    async with web.engine.connect() as conn:
        verdicts = (await conn.execute(select(readings.c.verdict).order_by(readings.c.id))).scalars().all()
    assert verdicts == ["accepted", "accepted", "needs_confirmation"]  # nothing confirmed, nothing added
    # The operators' desk is a different surface: a resident's session does not open it.
    assert (await mine.get("/operator/queue")).url.endswith("/operator/login")


# -- readings --------------------------------------------------------------------------------


async def test_submit_confirm_and_history(web: Web) -> None:
    await web.seed_history("1000001", {"T": "1000"}, {"T": "1300"})
    c = web.client()
    home = await c.sign_in("1000001", "4567")
    assert "Прежние: <b>1 300</b> от 15.10.2026" in home.text
    assert "Ожидаем от 1 531 до 1 828" in home.text  # 10 kWh a day for 33 days, -30 %..+60 %
    page = await c.post("/cabinet/meters/M-1", {"v_T": "2 500,5", "nonce": home.nonce()})
    assert "Проверьте показания" in page.text and 'role="alert"' in page.text
    assert "расход 1 200.5 кВт·ч, обычно 231-528. Подтвердите или исправьте" in page.text
    receipt = int(page.url.rsplit("/", 1)[1])
    # Sending the same form again (a double click, a reload) stores it once.
    again = await c.post(
        "/cabinet/meters/M-1", {"v_T": "2 500,5", "nonce": home.nonce(), "_csrf": home.token()}
    )
    assert again.url == page.url
    assert "Ждут вашего подтверждения" in (await c.get("/cabinet/")).text
    await c.get(f"/cabinet/receipts/{receipt}")
    page = await c.post(f"/cabinet/receipts/{receipt}/confirm", {})
    assert "Показания подтверждены и приняты" in page.text and "Показания приняты" in page.text
    page = await c.post("/cabinet/meters/M-1", {"v_T": "abc", "nonce": (await c.get("/cabinet/")).nonce()})
    assert "Показания не приняты" in page.text and "«abc» не число" in page.text
    assert "Введите показания ещё раз" in page.text  # the form again, right there
    billing = web.gateway.billing
    batch, rows = await billing.lease("test", 10, web.clock())
    await billing.commit(batch, web.clock())
    history = await c.get("/cabinet/history")
    assert "Ноябрь 2026" in history.text and "Октябрь 2026" in history.text
    assert "личный кабинет" in history.text and "учтены 17.11.2026" in history.text
    assert history.text.count("<svg") == 1 and "<rect" in history.text
    assert '<td class="num">1 200.5</td>' in history.text  # November's consumption in the table
    async with web.engine.connect() as conn:
        stored = (
            await conn.execute(select(readings.c.value, readings.c.verdict).order_by(readings.c.id))
        ).all()
    # "abc" is refused before any value exists: its answer is kept with the message, no reading row.
    assert [tuple(r) for r in stored] == [("1000", "accepted"), ("1300", "accepted"), ("2500.5", "accepted")]


async def test_sessions_survive_a_restart(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    first = await start_web(db_url, tmp_path, clock)
    c = first.client()
    assert (await c.sign_in("1000001", "4567")).status == 200
    cookies = {m.key: m.value for m in c.http.cookie_jar}
    await first.close()
    second = await start_web(db_url, tmp_path, clock)
    try:
        again = second.client()
        again.http.cookie_jar.update_cookies(cookies, aiohttp.helpers.URL(second.base + "/cabinet/"))
        page = await again.get("/cabinet/")
        assert page.url.endswith("/cabinet/") and "1000001" in page.text
        assert await _session_keys(second.engine) == 1
    finally:
        await second.close()


async def test_a_configured_session_key_is_used_and_nothing_is_generated(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    w = await start_web(db_url, tmp_path, clock, cabinet={"session_key": "x" * 40})
    try:
        assert (await w.client().sign_in("1000001", "4567")).status == 200
        assert await _session_keys(w.engine) == 0
    finally:
        await w.close()
    with pytest.raises(ConfigError, match="cabinet.session_key"):
        load_config(None, {"GATEWAY_CABINET_SESSION_KEY": "short"})


async def test_disabled_cabinet_is_not_mounted(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    w = await start_web(db_url, tmp_path, clock, cabinet={"enabled": False}, operators={"enabled": False})
    try:
        assert (await w.client().get("/cabinet/login")).status == 404
        assert (await w.client().get("/operator/login")).status == 404
    finally:
        await w.close()


# -- the read-only queries and the chart -------------------------------------------------------


def test_expected_range_follows_the_band_or_the_meter_power() -> None:
    meter = MeterInfo(1, 1, "1", "M", ("T",), 5, Decimal(10), True)
    limits = RuleThresholds()
    last = datetime(2026, 10, 15, tzinfo=UTC)
    state = ZoneState(Decimal(1300), last, total_kwh=Decimal(300), total_days=Decimal(30))
    now = datetime(2026, 11, 14, tzinfo=UTC)  # 30 days: 300 kWh expected, +60 % / -30 %
    assert account_views.expected_next(meter, "T", state, now, RuleGroup.RESIDENTS, limits) == (
        Decimal(1510),
        Decimal(1780),
        "band",
    )
    young = ZoneState(Decimal(1300), last, total_kwh=Decimal(10), total_days=Decimal(1))
    one_day = datetime(2026, 10, 16, tzinfo=UTC)  # 24 h at 10 kW, +1 kWh for rounding
    assert account_views.expected_next(meter, "T", young, one_day, RuleGroup.RESIDENTS, limits) == (
        Decimal(1300),
        Decimal(1541),
        "power",
    )
    near_top = ZoneState(Decimal(99990), last)
    assert account_views.expected_next(meter, "T", near_top, one_day, RuleGroup.RESIDENTS, limits) == (
        Decimal(99990),
        Decimal(99999),
        "power",
    )
    assert account_views.expected_next(meter, "T", ZoneState(), now, RuleGroup.RESIDENTS, limits) is None


async def test_monthly_consumption_and_search(
    engine: AsyncEngine, db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    w = await start_web(db_url, tmp_path, clock)
    try:
        await w.seed_history("1000002", {"T1": "999000", "T2": "500"}, {"T1": "999500", "T2": "600"})
        w.clock.now = datetime(2026, 11, 15, 9, tzinfo=UTC)
        assert (await w.submit("1000002", {"T1": "100", "T2": "700"})).status is Status.ACCEPTED  # rollover
        uses = await account_views.monthly_consumption(engine, "1000002")
        assert [(u.period, u.zone, u.kwh) for u in uses] == [
            ("2026-10", "T1", Decimal(500)),
            ("2026-10", "T2", Decimal(100)),
            ("2026-11", "T1", Decimal(600)),
            ("2026-11", "T2", Decimal(100)),
        ]
        assert [a.number for a in await account_views.find_accounts(engine, "1000003")] == ["1000003"]
        assert [a.number for a in await account_views.find_accounts(engine, "8 (903) 111-22-33")] == [
            "1000003",
            "1000005",
        ]
        assert [a.number for a in await account_views.find_accounts(engine, "2233")] == ["1000003", "1000005"]
        assert [a.number for a in await account_views.find_accounts(engine, "ленина 1-2")] == ["1000002"]
        # no wildcards
        assert [a.number for a in await account_views.find_accounts(engine, "Ленина 1-%")] == []
        assert await account_views.find_accounts(engine, "   ") == []
    finally:
        await w.close()


def test_chart_draws_every_month_and_escapes_text() -> None:
    svg = bar_chart(
        ["2026-09", "2026-10", "2026-11"],
        {"Т1 <день>": [Decimal(300), None, Decimal("350.5")], "Т2": [Decimal(100), Decimal(90), Decimal(80)]},
        "Расход & счётчик",
        label=lambda p: p[5:],
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<rect") == 5 + 2  # five bars and two legend keys
    assert "Т1 &lt;день&gt;" in svg and "Расход &amp; счётчик" in svg and "<день>" not in svg
    assert "11, Т1 &lt;день&gt;: 350.5 кВт·ч" in svg  # each bar says what it is
    assert "10: Т1 &lt;день&gt; нет данных" in svg
    assert nice_ceiling(350.5) == 500 and nice_ceiling(180) == 200 and nice_ceiling(0) == 1
