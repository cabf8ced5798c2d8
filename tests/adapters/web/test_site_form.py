"""The form on the site (`/form/`) over real HTTP on both databases: no sign-in, CSRF, one answer
whatever became of the reading, limits per address and per account, a form sent twice stored once."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.store.schema import inbound, readings
from tests.adapters.web.test_cabinet import Web, start_web
from tests.conftest import FakeClock

_ANSWER = re.compile(r'<section class="verdict[^>]*>(.*?)</section>', re.S)


@pytest.fixture
async def web(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Web]:
    w = await start_web(
        db_url,
        tmp_path,
        clock,
        site_form={"enabled": True},
        senders={"site_per_address_per_hour": 6, "site_per_account_per_hour": 2},
    )
    yield w
    await w.close()


def _answer(text: str) -> str:
    """The answer without what differs by design: the receipt and the echo of what was typed."""
    found = _ANSWER.search(text)
    assert found, text[:800]
    return re.sub(r"<b>[^<]*</b>", "<b>…</b>", found.group(1))


async def _count(web: Web, table: object) -> int:
    async with web.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def test_one_answer_whatever_became_of_the_reading(web: Web) -> None:
    await web.seed_history("1000001", {"T": "1000"}, {"T": "1300"})
    await web.seed_history("1000002", {"T1": "1000", "T2": "500"}, {"T1": "1300", "T2": "600"})
    answers, statuses = [], []
    for i, (account, values) in enumerate(
        [
            ("1000001", ["1620"]),
            ("1000001", ["100"]),
            ("9999999", ["100"]),
            ("1000002", ["5000", "900"]),
            ("1000003", ["1"]),
        ]
    ):
        c = web.client(f"10.1.0.{i}")
        page = await c.get("/form/")
        assert page.status == 200 and "Передать показания счётчика" in page.text and "_csrf" in page.text
        form = {"account": account, **{f"v{k + 1}": v for k, v in enumerate(values)}, "nonce": page.nonce()}
        sent = await c.post("/form/", form)
        assert sent.status == 200, sent.text[:500]
        assert (
            f"лицевой счёт <b>{account}</b>" in sent.text
            and f"показания <b>{', '.join(values)}</b>" in sent.text
        )
        answers.append(_answer(sent.text))
    assert len(set(answers)) == 1  # accepted for review, lower, unknown, unusual, wrong zones: one answer
    assert "меньше" not in answers[0] and "1 300" not in answers[0]
    async with web.engine.connect() as conn:
        statuses = [
            tuple(r)
            for r in await conn.execute(
                select(inbound.c.response).where(inbound.c.channel == "site").order_by(inbound.c.id)
            )
        ]
    assert [s[0].split('"status":"')[1].split('"')[0] for s in statuses] == [
        "flagged",
        "rejected",
        "rejected",
        "flagged",
        "rejected",
    ]


async def test_what_the_form_itself_says(web: Web) -> None:
    c = web.client("10.2.0.1")
    page = await c.get("/form/")
    refused = await c.post("/form/", {"account": "1000001", "v1": "100"}, csrf=False)
    assert refused.status == 403
    page = await c.get("/form/")
    bad = await c.post("/form/", {"account": "12-ab", "v1": "сто", "nonce": page.nonce()})
    assert bad.status == 422
    assert "Номер лицевого счёта — от 5 до 12 цифр" in bad.text and "Показания — число" in bad.text
    assert 'aria-invalid="true"' in bad.text and 'value="12-ab"' in bad.text
    empty = await c.post("/form/", {"account": "1000001", "nonce": page.nonce()})
    assert empty.status == 422 and "Введите показания счётчика." in empty.text
    assert await _count(web, inbound) == 0
    # A form sent twice (the same page's nonce) is one reading.
    page = await c.get("/form/")
    form = {"account": "1000001", "v1": "1500", "nonce": page.nonce()}
    first = await c.post("/form/", form)
    second = await c.post("/form/", {**form, "_csrf": page.token()})
    assert first.status == second.status == 200
    assert re.findall(r"Номер обращения: <b>(\d+)</b>", first.text) == re.findall(
        r"Номер обращения: <b>(\d+)</b>", second.text
    )
    assert await _count(web, readings) == 1


async def test_limits_per_account_and_per_address(web: Web) -> None:
    for i in range(2):  # the account's two of the hour, from two addresses
        c = web.client(f"10.3.0.{i}")
        page = await c.get("/form/")
        assert (
            await c.post("/form/", {"account": "1000001", "v1": str(1500 + i), "nonce": page.nonce()})
        ).status == 200
    c = web.client("10.3.0.9")
    page = await c.get("/form/")
    limited = await c.post("/form/", {"account": "1000001", "v1": "1502", "nonce": page.nonce()})
    assert limited.status == 429 and "Слишком много показаний за час" in limited.text
    same = web.client("10.3.1.1")  # one address, six of the hour over any accounts
    for account in ("1000002", "1000002", "1000003", "1000003", "1000005", "1000005"):
        page = await same.get("/form/")
        assert (
            await same.post("/form/", {"account": account, "v1": "1", "nonce": page.nonce()})
        ).status == 200
    page = await same.get("/form/")
    assert (await same.post("/form/", {"account": "1000006", "v1": "1", "nonce": page.nonce()})).status == 429
    assert await _count(web, inbound) == 8  # the refused ones stored nothing
    web.clock.advance(hours=1)
    page = await c.get("/form/")
    assert (await c.post("/form/", {"account": "1000001", "v1": "1502", "nonce": page.nonce()})).status == 200
