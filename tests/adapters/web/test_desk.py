"""The operators' desk over real HTTP on both databases: staff sign-in, search, entry, review, CLI."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import orjson
from sqlalchemy import func, select

from adapters.web.tables import operators
from gateway.cli import main
from gateway.model import Status
from gateway.store.schema import audit, readings
from tests.adapters.web.test_cabinet import OPERATOR, OPERATOR_PASSWORD, Web, start_web
from tests.adapters.web.test_cabinet import web as web  # noqa: F401 - the fixture
from tests.conftest import FakeClock


async def test_staff_sign_in_wrong_then_right_and_limits(web: Web) -> None:
    c = web.client("10.1.0.1")
    assert (await c.get("/operator/")).url.endswith("/operator/login")
    for login, password in (("ivanova", "wrong"), ("nobody", OPERATOR_PASSWORD), ("", "")):
        page = await c.operator_sign_in(login, password)
        assert page.status == 401 and "Неверный логин или пароль." in page.text
    page = await c.operator_sign_in("ivanova", OPERATOR_PASSWORD)
    assert page.status == 200 and "Иванова Анна Петровна" in page.text and "Поиск абонента" in page.text
    # A staff session does not open the residents' cabinet.
    assert (await c.get("/cabinet/")).url.endswith("/cabinet/login")
    for _ in range(web.gateway.config.cabinet.max_failures_per_account):
        await web.client("10.1.0.2").operator_sign_in("ivanova", "guess")
    # The stranger's address waits; the employee at another address signs in as usual.
    assert (await web.client("10.1.0.2").operator_sign_in("ivanova", OPERATOR_PASSWORD)).status == 429
    assert (await web.client("10.1.0.3").operator_sign_in("ivanova", OPERATOR_PASSWORD)).status == 200


async def test_entry_on_a_residents_behalf_records_the_employee(web: Web) -> None:
    await web.seed_history("1000002", {"T1": "1000", "T2": "500"}, {"T1": "1300", "T2": "600"})
    c = web.client()
    await c.operator_sign_in("ivanova", OPERATOR_PASSWORD)
    for query in ("1000002", "+7 916 123-45-68", "4568", "ленина 1-2"):
        page = await c.get(f"/operator/?q={query}")
        assert 'href="/operator/accounts/1000002"' in page.text, query
        assert "+7 9** ***-**-**" in page.text and "+79161234568" not in page.text
    assert "Ничего не найдено" in (await c.get("/operator/?q=Пушкина")).text
    page = await c.get("/operator/accounts/1000002")
    assert (
        "Прежние: <b>1 300</b> от 15.10.2026" in page.text
        and "Будет записано: принял(а) Иванова" in page.text
    )
    page = await c.post(
        "/operator/accounts/1000002/meters/M-2",
        {"v_T1": "1 640", "v_T2": "705,5", "how": "phone", "taken_on": "2026-11-16", "nonce": page.nonce()},
    )
    assert page.status == 200 and "Показания приняты" in page.text
    assert "оператор, принял(а) Иванова Анна Петровна" in page.text
    async with web.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    readings.c.zone,
                    readings.c.value,
                    readings.c.channel,
                    readings.c.employee,
                    readings.c.source,
                    readings.c.taken_at,
                ).where(readings.c.channel == "operator")
            )
        ).all()
    assert [(r.zone, r.value, r.channel, r.employee, r.source) for r in rows] == [
        ("T1", "1640", "operator", "Иванова Анна Петровна", "employee:Иванова Анна Петровна"),
        ("T2", "705.5", "operator", "Иванова Анна Петровна", "employee:Иванова Анна Петровна"),
    ]
    assert rows[0].taken_at.isoformat() == "2026-11-16T09:00:00+00:00"  # noon in Moscow that day
    # Another meter's serial under this account is not reachable.
    await c.get("/operator/accounts/1000002")
    assert (await c.post("/operator/accounts/1000002/meters/M-1", {"v_T": "1"})).status == 404
    assert (await c.get("/operator/accounts/7777777")).status == 404


async def test_held_readings_are_reviewed_with_a_comment_and_audited(web: Web) -> None:
    await web.seed_history("1000001", {"T": "1000"}, {"T": "1300"})
    await web.seed_history("1000002", {"T1": "1000", "T2": "500"}, {"T1": "1300", "T2": "600"})
    waiting = await web.submit("1000001", {"T": "2500"})
    assert waiting.status is Status.NEEDS_CONFIRMATION
    c = web.client()
    page = await c.operator_sign_in("ivanova", OPERATOR_PASSWORD)
    page = await c.get("/operator/accounts/1000002")
    page = await c.post(
        "/operator/accounts/1000002/meters/M-2", {"v_T1": "5000", "v_T2": "700", "nonce": page.nonce()}
    )
    assert "Показания приняты на проверку" in page.text  # operators' unusual values are flagged
    flagged = int(page.url.rsplit("/", 1)[1])

    queue = await c.get("/operator/queue")
    assert f"№ {waiting.receipt}" in queue.text and f"№ {flagged}" in queue.text
    assert "ждут подтверждения" in queue.text and "на проверке" in queue.text
    # Without the token the review is refused and nothing changes.
    assert (
        await c.post(
            f"/operator/receipts/{flagged}/review", {"decision": "reject", "comment": "x"}, csrf=False
        )
    ).status == 403
    await c.get("/operator/queue")
    page = await c.post(
        f"/operator/receipts/{flagged}/review", {"decision": "reject", "back": "/operator/queue"}
    )
    assert "чтобы отклонить, напишите причину" in page.text
    page = await c.post(
        f"/operator/receipts/{flagged}/review",
        {"decision": "reject", "comment": "Абонент ошибся в цифре", "back": "/operator/queue"},
    )
    assert page.url.endswith("/operator/queue") and f"Квитанция {flagged}: отклонена" in page.text
    page = await c.post(
        f"/operator/receipts/{waiting.receipt}/review",
        {"decision": "accept", "comment": "Проверено по фото", "back": "https://evil.example/"},
    )
    assert page.url.endswith(f"/operator/receipts/{waiting.receipt}") and "Показания приняты" in page.text
    assert "Иванова Анна Петровна" in page.text and "Проверено по фото" in page.text  # the trail
    page = await c.post(
        f"/operator/receipts/{waiting.receipt}/review", {"decision": "reject", "comment": "x"}
    )
    assert "уже рассмотрена" in page.text
    assert "Очередь пуста" in (await c.get("/operator/queue")).text

    async with web.engine.connect() as conn:
        trail = (await conn.execute(select(audit).order_by(audit.c.id))).mappings().all()
        total = (await conn.execute(select(func.count()).select_from(readings))).scalar_one()
    assert total == 2 + 4 + 1 + 2  # nothing deleted: history, the waiting one, both zones of the flagged one
    assert [(t["action"], t["actor"], t["comment"]) for t in trail] == [
        ("review", "ivanova (Иванова Анна Петровна)", "Абонент ошибся в цифре"),
        ("review", "ivanova (Иванова Анна Петровна)", "Абонент ошибся в цифре"),
        ("review", "ivanova (Иванова Анна Петровна)", "Проверено по фото"),
    ]
    assert orjson.loads(trail[0]["before"])["verdict"] == "flagged"
    assert orjson.loads(trail[0]["after"])["verdict"] == "rejected"
    assert orjson.loads(trail[2]["after"])["verdict"] == "accepted"
    assert trail[0]["at"] == web.clock()


async def test_cli_adds_an_operator_who_can_then_sign_in(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n', encoding="utf-8")

    def run(*argv: str, stdin: str) -> int:
        saved = sys.stdin
        sys.stdin = io.StringIO(stdin)
        try:
            return main(["--config", str(config), *argv])
        finally:
            sys.stdin = saved

    assert (
        await asyncio.to_thread(run, "operator", "add", "petrov", "--name", "Петров П. П.", stdin="short\n")
        == 2
    )
    assert (
        await asyncio.to_thread(run, "operator", "add", "bad login", "--name", "X", stdin="long-enough\n")
        == 2
    )
    assert (
        await asyncio.to_thread(
            run, "operator", "add", "petrov", "--name", "Петров П. П.", stdin="пароль-петрова\n"
        )
        == 0
    )
    assert (
        await asyncio.to_thread(
            run, "operator", "add", "petrov", "--name", "Петров Пётр", stdin="новый-пароль-1\n"
        )
        == 0
    )
    w = await start_web(db_url, tmp_path, clock, operators={"users": [OPERATOR]})
    try:
        async with w.engine.connect() as conn:
            stored = (
                await conn.execute(select(operators.c.login, operators.c.name, operators.c.password_hash))
            ).all()
        assert [(r.login, r.name) for r in stored] == [("petrov", "Петров Пётр")]
        assert stored[0].password_hash.startswith("$argon2id$") and "новый" not in stored[0].password_hash
        assert (await w.client().operator_sign_in("petrov", "пароль-петрова")).status == 401  # replaced
        page = await w.client().operator_sign_in("petrov", "новый-пароль-1")
        assert page.status == 200 and "Петров Пётр" in page.text
    finally:
        await w.close()
