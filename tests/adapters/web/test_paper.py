"""Paper forms on the operators' desk over real HTTP on both databases: the row check stores
nothing, the batch is stored with the employee and the forms' date of receipt, the grid's page
allows its own script only."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from sqlalchemy import func, select

from gateway.store.schema import inbound, readings
from tests.adapters.web.test_cabinet import OPERATOR_PASSWORD, Client, Web
from tests.adapters.web.test_cabinet import web as web  # noqa: F401 - the fixture


async def _signed_in(web: Web) -> Client:
    c = web.client("10.5.0.1")
    assert (await c.operator_sign_in("ivanova", OPERATOR_PASSWORD)).url.endswith("/operator/")
    return c


async def _json(c: Client, path: str) -> dict[str, object]:
    async with c.http.get(c.base + path) as resp:
        assert resp.status == 200
        found: dict[str, object] = await resp.json()
        return found


async def test_rows_checked_as_typed_then_the_batch_stored_with_the_employee_and_date(web: Web) -> None:
    await web.seed_history("1000001", {"T": "1000"}, {"T": "1300"})
    c = await _signed_in(web)
    async with c.http.get(web.base + "/operator/paper") as resp:
        page = await resp.text()
        assert resp.status == 200 and "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert '<script src="/operator/static/paper.js"></script>' in page and 'name="r8-account"' in page
    async with c.http.get(web.base + "/operator/") as resp:  # other pages keep running no script at all
        assert "script-src" not in resp.headers["Content-Security-Policy"]

    assert await _json(c, "/operator/paper/account?number=1000002") == {
        "found": True, "meters": [{"serial": "M-2", "zones": ["T1", "T2"], "names": ["Т1", "Т2"], "active": True}],
    }  # fmt: skip
    assert (await _json(c, "/operator/paper/account?number=9999999"))[
        "message"
    ] == "Лицевой счёт 9999999 не найден"
    lower = await _json(c, "/operator/paper/check?account=1000001&received_on=2026-11-16&v1=1200")
    assert lower == {
        "status": "rejected",
        "said": "не будет принято",
        "reasons": ["1 200 меньше прежних 1 300 от 15.10. Проверьте"],
        "receipt": None,
    }
    fine = await _json(c, "/operator/paper/check?account=1000001&received_on=2026-11-16&v1=1610")
    assert fine["said"] == "будет принято"
    future = await _json(c, "/operator/paper/check?account=1000001&received_on=2026-11-18&v1=1610")
    assert future["reasons"] == ["Дата получения бланков — не позже сегодняшнего дня"]
    async with web.engine.connect() as conn:
        before = (await conn.execute(select(func.count()).select_from(inbound))).scalar_one()
    assert before == 2  # the history only: checks store nothing

    form = {
        "received_on": "2026-11-16", "source": "fax", "nonce": "paper-batch-nonce-0001",
        "r1-account": "1000001", "r1-v1": "1610",
        "r2-account": "1000002", "r2-meter": "M-2", "r2-v1": "4521,5", "r2-v2": "1720",
        "r3-account": "1000001", "r3-v1": "1200",
        "r4-account": "9999999", "r4-v1": "5",
    }  # fmt: skip
    saved = await c.post("/operator/paper", form)
    assert saved.status == 200
    assert "Бланки от 16.11.2026 (факс): строк 4; приняты 2, на проверке 0, не приняты 2." in saved.text
    again = await c.post("/operator/paper", {**form, "_csrf": c.last.token() if c.last else ""})  # sent twice
    assert "повтор: приняты" in again.text
    async with web.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    readings.c.value,
                    readings.c.verdict,
                    readings.c.employee,
                    readings.c.channel,
                    readings.c.taken_at,
                    readings.c.source,
                )
                .where(readings.c.channel == "paper")
                .order_by(readings.c.id)
            )
        ).all()
        payloads = [
            orjson.loads(p)
            for p in (
                await conn.execute(
                    select(inbound.c.payload).where(inbound.c.channel == "paper").order_by(inbound.c.id)
                )
            ).scalars()
        ]
    assert [(r.value, r.verdict) for r in rows] == [
        ("1610", "accepted"),
        ("4521.5", "accepted"),
        ("1720", "accepted"),
        ("1200", "rejected"),
    ]
    assert {r.employee for r in rows} == {"Иванова Анна Петровна"} and {r.source for r in rows} == {
        "employee:Иванова Анна Петровна"
    }
    assert {r.taken_at for r in rows} == {
        datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
    }  # noon of the date of receipt
    assert len(payloads) == 4 and payloads[1] == {
        "form": "paper", "received_on": "2026-11-16", "source": "fax", "row": 2, "account": "1000002", "meter": "M-2", "values": ["4521,5", "1720"],
    }  # fmt: skip


async def test_a_batch_without_a_date_or_rows_is_refused_and_the_desk_is_for_staff(web: Web) -> None:
    c = await _signed_in(web)
    await c.get("/operator/paper")
    refused = await c.post(
        "/operator/paper", {"received_on": "2026-11-30", "r1-account": "1000001", "r1-v1": "1"}
    )
    assert refused.status == 422 and "Укажите дату получения бланков" in refused.text
    empty = await c.post("/operator/paper", {"received_on": "2026-11-17"})
    assert empty.status == 422 and "Ни одна строка не заполнена." in empty.text
    stranger = web.client("10.5.0.2")
    assert (await stranger.get("/operator/paper/check?account=1000001&v1=1")).url.endswith("/operator/login")
    async with web.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(inbound))).scalar_one() == 0
