"""Instrument transformers' ratios (gateway/ratios.py): the registry gives them, the core bills the
register times both, keeps the register and the ratio with the reading, judges energy as billed
and digits as the register's, and billing, the desk and a confirmation see the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway import held, ratios
from gateway.model import Channel, Status, Submission
from gateway.registry import parse_rows
from gateway.store.schema import meter_state, meters, readings
from tests.adapters.web.test_cabinet import OPERATOR_PASSWORD, start_web
from tests.conftest import BILLING_TOKEN, DEVICE_TOKEN, FakeClock

HEADER = "account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address,ct_ratio,vt_ratio\n"
REGISTRY = HEADER + (
    "1000001,M-1,Меркурий 201,T,6,+79161234567,10,ул. Ленина 1-1,,\n"
    # 150/5 A current transformers and 6000/100 V voltage transformers: 30 x 60 = 1800
    "2000001,CT-1,Меркурий 230ART,T,6,+79161230001,100,ТП-12 ввод 1,150/5,6000/100\n"
    "2000002,CT-2,Меркурий 234,T,6,+79161230002,60,Магазин,100/5,\n"
)


def test_a_ratio_is_a_number_or_primary_over_secondary() -> None:
    assert ratios.parse_ratio("150/5", "ct_ratio") == 30
    assert ratios.parse_ratio(" 10000 / 100 ", "vt_ratio") == 100
    assert ratios.parse_ratio("7,5", "ct_ratio") == Decimal("7.5")
    assert ratios.parse_ratio("1", "ct_ratio") is None  # no transformer
    assert ratios.parse_ratio("", "ct_ratio") is None
    for text, why in (
        ("0", "above 0"),
        ("-30", "above 0"),
        ("100001", "at most 100000"),
        ("6000/110", "does not divide by the secondary exactly"),
        ("1.2345", "more than 3 decimals"),
        ("abc", "not a number like 30"),
        ("nan", "not a number like 30"),
        ("150/0", "not a number like 30"),
    ):
        with pytest.raises(ValueError, match=why):
            ratios.parse_ratio(text, "ct_ratio")
    assert ratios.product(Decimal(8000), Decimal(1100)) == 8_800_000  # a 40000/5 CT on 110 kV
    with pytest.raises(ValueError, match="above 10000000"):
        ratios.product(Decimal(100000), Decimal(101))
    # exact: the register's digits and the ratio's all kept (Decimal's default would round at 28)
    biggest = ratios.billed(Decimal("999999999999999.999"), Decimal("9999999.999"))
    assert ratios.text(biggest) == "9999999998999999990000.000001"  # 10^22 - 10^12 - 10^4 + 10^-6
    # the longest a stored value gets: 15 + 7 integer digits, 3 + 6 decimals
    longest = ratios.billed(Decimal("999999999999999.999"), Decimal("1.001") * Decimal("9990.009"))
    assert len(ratios.text(longest)) <= 32


def test_the_registry_refuses_a_bad_ratio_by_line() -> None:
    rows, refused = parse_rows(
        HEADER
        + "3000001,X-1,M,T,6,,10,a,150/5,\n"
        + "3000002,X-2,M,T,6,,10,b,6000/110,\n"
        + "3000003,X-3,M,T,6,,10,c,100000,200\n"
        + "3000004,X-4,M,T,6,,10,d,,abc\n"
    )
    assert [(r.serial, r.ct_ratio, r.vt_ratio) for r in rows] == [("X-1", Decimal(30), None)]
    assert [line for line, _ in refused] == [3, 4, 5]
    assert "ct_ratio '6000/110' has more than 3 decimals" in refused[0][1]
    assert "is above 10000000" in refused[1][1]
    assert "vt_ratio 'abc' is not a number" in refused[2][1]


async def test_the_billed_reading_is_the_register_times_the_ratio(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    csv = tmp_path / "registry-ratios.csv"
    csv.write_text(REGISTRY, encoding="utf-8")
    web = await start_web(db_url, tmp_path, clock, registry={"csv": str(csv)})
    try:
        http = web.client()
        base = web.base

        async def push(item: dict[str, str]) -> dict[str, object]:
            async with http.http.post(
                base + "/api/v1/readings",
                json={"readings": [item]},
                headers={"Authorization": f"Bearer {DEVICE_TOKEN}"},
            ) as resp:
                assert resp.status == 200
                body = await resp.json()
            result: dict[str, object] = body["results"][0]
            return result

        first = await push({"id": "ct-1", "meter": "CT-1", "value": "1234.567"})
        assert first["status"] == "accepted", first
        assert first["readings"] == [  # type: ignore[comparison-overlap]
            {"reading_id": first["readings"][0]["reading_id"], "zone": "T", "value": "2222220.600"}  # type: ignore[index]
        ]
        # 0.033 on the register in an hour is 59.4 kWh: under the 100 kW the connection allows
        clock.advance(hours=1)
        assert (await push({"id": "ct-2", "meter": "CT-1", "value": "1234.6"}))["status"] == "accepted"
        # 0.1 more in the next hour is 180 kWh: more than 100 kW can draw, judged as billed energy
        clock.advance(hours=1)
        refused = await push({"id": "ct-3", "meter": "CT-1", "value": "1234.7"})
        assert refused["status"] == "rejected"
        assert [(r["code"], r["message_ru"]) for r in refused["reasons"]] == [  # type: ignore[attr-defined]
            ("impossible_consumption", "расход 180 кВт·ч больше возможного 101. Проверьте")
        ]
        # the count of digits is the register's (6), not the billed value's
        too_long = await push({"id": "ct-4", "meter": "CT-1", "value": "1234567"})
        assert [r["code"] for r in too_long["reasons"]] == ["too_many_digits"]  # type: ignore[attr-defined]
        assert too_long["reasons"][0]["message_ru"].startswith("1 234 567: у счётчика 6 цифр")  # type: ignore[index]
        ordinary = await push({"id": "m-1", "meter": "M-1", "value": "500"})
        assert ordinary["status"] == "accepted"

        async with web.engine.connect() as conn:
            stored = (
                await conn.execute(
                    select(readings.c.value, readings.c.raw_value, readings.c.ratio, readings.c.verdict)
                    .join(meters, meters.c.id == readings.c.meter_id)
                    .order_by(readings.c.id)
                )
            ).all()
            state = (
                await conn.execute(
                    select(meter_state.c.last_value)
                    .join(meters, meters.c.id == meter_state.c.meter_id)
                    .where(meters.c.serial == "CT-1")
                )
            ).scalar_one()
        assert [tuple(r) for r in stored] == [
            ("2222220.600", "1234.567", "1800", "accepted"),
            ("2222280.0", "1234.6", "1800", "accepted"),
            ("2222460.0", "1234.7", "1800", "rejected"),
            ("2222220600", "1234567", "1800", "rejected"),
            ("500", None, None, "accepted"),
        ]
        assert state == "2222280.0"  # the history is kept in billed kWh

        # billing receives the billed value, the register and the ratio; a meter without a ratio: 1
        async with http.http.post(
            base + "/api/v1/billing/batches",
            json={"limit": 10},
            headers={"Authorization": f"Bearer {BILLING_TOKEN}"},
        ) as resp:
            batch = await resp.json()
        assert [(r["meter_serial"], r["value"], r["raw_value"], r["ratio"]) for r in batch["readings"]] == [
            ("CT-1", "2222220.600", "1234.567", "1800"),
            ("CT-1", "2222280.0", "1234.6", "1800"),
            ("M-1", "500", "500", "1"),
        ]

        # the operators' desk shows both in the account's history
        await http.operator_sign_in("ivanova", OPERATOR_PASSWORD)
        page = await http.get("/operator/accounts/2000001")
        assert "2 222 280" in page.text and "= 1 234.6 × 1 800" in page.text
        assert "= 1 234.567 × 1 800" in page.text
        receipt = await http.get(f"/operator/receipts/{first['receipt']}")
        assert "2 222 220.6</b> кВт·ч" in receipt.text and "= 1 234.567 × 1 800" in receipt.text
    finally:
        await web.close()


async def test_a_confirmed_reading_keeps_its_billed_value(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    csv = tmp_path / "registry-ratios.csv"
    csv.write_text(REGISTRY, encoding="utf-8")
    web = await start_web(db_url, tmp_path, clock, registry={"csv": str(csv)})
    try:
        now = clock.now
        # a resident's history of about 20 register units (400 kWh) a month, then a jump
        clock.now = datetime(2026, 8, 15, 9, 0, tzinfo=UTC)
        for register in ("100", "120", "140"):
            verdict = await web.submit("2000002", {"T": register})
            assert verdict.status is Status.ACCEPTED, verdict
            clock.now += timedelta(days=30)
        clock.now = now
        jump = await web.gateway.intake.submit(
            Submission(Channel.CABINET, clock(), "seed", account="2000002", values={"T": "200"})
        )
        assert jump.status is Status.NEEDS_CONFIRMATION, jump
        assert [(r.zone, r.value) for r in jump.readings] == [("T", Decimal("4000"))]
        confirmed = await held.confirm(
            web.engine, web.gateway.config, jump.receipt or 0, "resident", clock(), account="2000002"
        )
        assert confirmed.status is Status.ACCEPTED, confirmed
        assert [(r.zone, r.value) for r in confirmed.readings] == [("T", Decimal("4000"))]
        async with web.engine.connect() as conn:
            state = (
                await conn.execute(
                    select(meter_state.c.last_value)
                    .join(meters, meters.c.id == meter_state.c.meter_id)
                    .where(meters.c.serial == "CT-2")
                )
            ).scalar_one()
        assert state == "4000"
    finally:
        await web.close()
