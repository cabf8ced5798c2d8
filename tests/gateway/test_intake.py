"""The intake end to end: real registry, real store, on SQLite and on PostgreSQL.

Each test checks what the sender is told (the Verdict) and what is stored (`inbound`,
`readings`, `meter_state`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.calendar import WorkCalendar
from gateway.config import RuleThresholds
from gateway.intake import Intake
from gateway.model import Channel, Severity, Status, Submission, Verdict
from gateway.registry import import_registry
from gateway.store.database import create_engine
from gateway.store.schema import inbound, meter_state, meters, readings
from tests.conftest import FakeClock, make_config, start_intake

PHONE_M1 = "+79161234567"  # account 1000001, meter M-1 (T, 6 digits, 10 kW)
PHONE_AMBIGUOUS = "+79031112233"  # accounts 1000003 and 1000005


def sms(
    clock: FakeClock, value: str, sender: str = PHONE_M1, mid: str | None = None, **kw: Any
) -> Submission:
    return Submission(Channel.SMS, clock(), sender, values={"T": value}, channel_message_id=mid, **kw)


def cabinet(clock: FakeClock, account: str, values: dict[str, str], **kw: Any) -> Submission:
    return Submission(Channel.CABINET, clock(), f"user-{account}", values=values, account=account, **kw)


def device(
    clock: FakeClock, serial: str, value: str, mid: str | None = None, taken_at: datetime | None = None
) -> Submission:
    return Submission(
        Channel.DEVICE,
        clock(),
        "head-end-1",
        values={"T": value},
        meter_serial=serial,
        channel_message_id=mid,
        taken_at=taken_at,
    )


async def rows(engine: AsyncEngine, table: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        order = [c for c in table.primary_key.columns]
        result = await conn.execute(select(table).order_by(*order))
        return [dict(r) for r in result.mappings()]


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def state_of(engine: AsyncEngine, serial: str, zone: str = "T") -> dict[str, Any]:
    async with engine.connect() as conn:
        meter_id = (await conn.execute(select(meters.c.id).where(meters.c.serial == serial))).scalar_one()
        row = (
            (
                await conn.execute(
                    select(meter_state).where(meter_state.c.meter_id == meter_id, meter_state.c.zone == zone)
                )
            )
            .mappings()
            .one()
        )
        return dict(row)


def totals(st: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """kWh and days behind the meter's average (compared as numbers, whatever their scale)."""
    return Decimal(st["total_kwh"]), Decimal(st["total_days"])


def codes(v: Verdict) -> list[str]:
    return [r.code for r in v.reasons]


# -- an accepted reading --------------------------------------------------------------------------


async def test_accepted_sms_is_stored_with_everything_billing_needs(
    intake: Intake, engine: AsyncEngine, clock: FakeClock
) -> None:
    v = await intake.submit(sms(clock, "12345,6", mid="sms-1", raw="12345,6"))
    assert v.status is Status.ACCEPTED and v.reasons == ()
    assert (v.account, v.meter_serial, v.period, v.duplicate) == ("1000001", "M-1", "2026-11", False)
    assert v.receipt is not None

    [msg] = await rows(engine, inbound)
    assert msg["id"] == v.receipt
    assert (msg["channel"], msg["channel_message_id"]) == ("sms", "sms-1")
    assert msg["source"] == "+7 9** ***-**-**"
    assert msg["received_at"] == clock.now
    assert msg["payload"] == "12345,6"
    assert '"accepted"' in msg["response"]

    [r] = await rows(engine, readings)
    assert v.readings[0].reading_id == r["id"]
    assert r["inbound_id"] == v.receipt
    assert (r["zone"], r["value"], r["verdict"], r["period"]) == ("T", "12345.6", "accepted", "2026-11")
    assert (r["channel"], r["source"]) == ("sms", "+7 9** ***-**-**")
    assert r["received_at"] == clock.now and r["taken_at"] == clock.now
    # received Tuesday 17 Nov, 12:00 in Moscow: due by the end of Wednesday 18 Nov, Moscow time
    assert r["due_at"] == datetime(2026, 11, 18, 21, 0, tzinfo=UTC)
    assert r["batch_id"] is None and r["committed_at"] is None

    st = await state_of(engine, "M-1")
    assert (st["last_value"], st["last_receipt"], st["last_period"]) == ("12345.6", v.receipt, "2026-11")
    assert st["last_taken_at"] == clock.now
    assert (st["res_value"], st["dev_value"]) == ("12345.6", None)


async def test_due_at_skips_the_weekend(engine: AsyncEngine, db_url: str, tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 20, 12, 0, tzinfo=UTC))  # Friday, 15:00 in Moscow
    it = await start_intake(engine, make_config(db_url, tmp_path), clock)
    await it.submit(cabinet(clock, "1000001", {"T": "100"}))
    await it.stop()
    [r] = await rows(engine, readings)
    assert r["due_at"] == datetime(2026, 11, 23, 21, 0, tzinfo=UTC)  # end of Monday in Moscow
    assert r["source"] == "cabinet:user-1000001"


# -- repeats --------------------------------------------------------------------------------------


async def test_redelivered_message_gets_the_stored_answer(
    intake: Intake, engine: AsyncEngine, clock: FakeClock
) -> None:
    first = await intake.submit(sms(clock, "12345", mid="sms-1"))
    clock.advance(minutes=10)
    again = await intake.submit(sms(clock, "12345", mid="sms-1"))
    assert again.duplicate is True and first.duplicate is False
    assert again.receipt == first.receipt
    assert (again.status, again.reasons, again.period, again.readings) == (
        first.status,
        first.reasons,
        first.period,
        first.readings,
    )
    assert await count(engine, inbound) == 1
    assert await count(engine, readings) == 1
    # the same id on another channel is another message
    other = await intake.submit(
        Submission(
            Channel.TELEGRAM,
            clock(),
            "chat-1",
            values={"T": "12350"},
            account="1000001",
            channel_message_id="sms-1",
        )
    )
    assert other.duplicate is False and other.receipt != first.receipt
    assert await count(engine, readings) == 2


async def test_redelivered_message_of_a_rejection_is_rejected_again(
    intake: Intake, engine: AsyncEngine, clock: FakeClock
) -> None:
    first = await intake.submit(sms(clock, "12a45", mid="sms-bad"))
    again = await intake.submit(sms(clock, "12a45", mid="sms-bad"))
    assert first.status is again.status is Status.REJECTED
    assert codes(again) == ["bad_value"] and again.reasons == first.reasons
    assert again.receipt == first.receipt and again.duplicate
    assert await count(engine, inbound) == 1


async def test_same_message_twice_in_one_group(intake: Intake, engine: AsyncEngine, clock: FakeClock) -> None:
    sub = device(clock, "M-1", "500", mid="item-7")
    first, second = await intake.submit_many([sub, sub])
    assert first.status is Status.ACCEPTED and first.duplicate is False
    assert second.duplicate is True and second.receipt == first.receipt
    assert second.readings == first.readings
    assert await count(engine, inbound) == 1
    assert await count(engine, readings) == 1


async def test_exact_duplicate_with_another_message_id(
    intake: Intake, engine: AsyncEngine, clock: FakeClock
) -> None:
    first_at = clock.now
    first = await intake.submit(sms(clock, "12345", mid="sms-1"))
    clock.advance(hours=1)
    second = await intake.submit(sms(clock, "12345", mid="sms-2"))
    assert second.status is Status.ACCEPTED
    assert second.duplicate is True and second.receipt == first.receipt
    assert await count(engine, readings) == 1
    assert await count(engine, inbound) == 2  # the message itself is kept
    # and its own redelivery answers with the first receipt as well
    third = await intake.submit(sms(clock, "12345", mid="sms-2"))
    assert third.receipt == first.receipt and third.duplicate
    st = await state_of(engine, "M-1")
    assert st["last_receipt"] == first.receipt and st["last_taken_at"] == first_at


async def test_exact_duplicate_within_one_group_points_at_the_first(
    intake: Intake, engine: AsyncEngine, clock: FakeClock
) -> None:
    a = cabinet(clock, "1000001", {"T": "777"}, channel_message_id="c-1")
    b = cabinet(clock, "1000001", {"T": "777"}, channel_message_id="c-2")
    va, vb = await intake.submit_many([a, b])
    assert va.duplicate is False and vb.duplicate is True
    assert vb.receipt == va.receipt
    assert await count(engine, readings) == 1
    # the stored answer of the second says so too
    again = await intake.submit(b)
    assert again.receipt == va.receipt


async def test_device_same_value_later_is_a_new_reading(
    intake: Intake, engine: AsyncEngine, clock: FakeClock
) -> None:
    at = clock.now - timedelta(hours=6)
    v1 = await intake.submit(device(clock, "M-1", "500", mid="d-1", taken_at=at))
    v2 = await intake.submit(device(clock, "M-1", "500", mid="d-2", taken_at=at))  # same sample
    v3 = await intake.submit(device(clock, "M-1", "500", mid="d-3"))  # same value, 6 h later
    assert v2.duplicate and v2.receipt == v1.receipt
    assert v3.status is Status.ACCEPTED and not v3.duplicate and v3.receipt != v1.receipt
    assert [r["inbound_id"] for r in await rows(engine, readings)] == [v1.receipt, v3.receipt]
    st = await state_of(engine, "M-1")
    assert st["last_receipt"] == v3.receipt and st["dev_value"] == "500"
    assert totals(st) == (Decimal("0"), Decimal("0.25"))


# -- whose meter ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "code", "ru"),
    [
        (
            lambda c: sms(c, "100", sender="+79990000000"),
            "unknown_sender",
            "Укажите номер л/с: 1234567 12345",
        ),
        (
            lambda c: sms(c, "100", sender=PHONE_AMBIGUOUS),
            "account_ambiguous",
            "На номер несколько л/с. Укажите л/с",
        ),
        (
            lambda c: cabinet(c, "1000004", {"T": "100"}),
            "meter_ambiguous",
            "У л/с несколько счётчиков: укажите л/с#счётчик#показание",
        ),
        (
            lambda c: cabinet(c, "9999999", {"T": "100"}),
            "unknown_account",
            "Л/с 9999999 не найден. Проверьте номер",
        ),
        (
            lambda c: device(c, "X-404", "100"),
            "unknown_meter",
            "Счётчик X-404 не найден. Проверьте номер",
        ),
        (
            lambda c: cabinet(c, "1000001", {"T": "100"}, meter_serial="M-2"),
            "meter_not_on_account",
            "Счётчик M-2 не относится к л/с 1000001",
        ),
    ],
)
async def test_meter_cannot_be_told(
    intake: Intake, engine: AsyncEngine, clock: FakeClock, make: Any, code: str, ru: str
) -> None:
    v = await intake.submit(make(clock))
    assert v.status is Status.REJECTED
    [r] = v.reasons
    assert (r.code, r.severity, r.message_ru) == (code, Severity.REJECT, ru)
    assert len(r.message_ru) <= 70
    assert v.readings == ()
    [msg] = await rows(engine, inbound)
    assert msg["id"] == v.receipt and code in msg["response"]
    assert await count(engine, readings) == 0


async def test_ambiguous_phone_with_an_account_is_resolved(intake: Intake, clock: FakeClock) -> None:
    v = await intake.submit(sms(clock, "100", sender=PHONE_AMBIGUOUS, account="1000005"))
    assert v.status is Status.ACCEPTED and (v.account, v.meter_serial) == ("1000005", "M-5")
    v = await intake.submit(cabinet(clock, "1000004", {"T": "100"}, meter_serial="M-4B"))
    assert v.status is Status.ACCEPTED and v.meter_serial == "M-4B"


# -- zones ----------------------------------------------------------------------------------------


async def test_two_zone_meter(intake: Intake, engine: AsyncEngine, clock: FakeClock) -> None:
    v = await intake.submit(cabinet(clock, "1000002", {"T1": "12345.6", "T2": "4567"}))
    assert v.status is Status.ACCEPTED and v.meter_serial == "M-2"
    stored = await rows(engine, readings)
    assert [(r["zone"], r["value"], r["verdict"]) for r in stored] == [
        ("T1", "12345.6", "accepted"),
        ("T2", "4567", "accepted"),
    ]
    assert {r.zone: r.reading_id for r in v.readings} == {r["zone"]: r["id"] for r in stored}
    assert (await state_of(engine, "M-2", "T1"))["last_value"] == "12345.6"
    assert (await state_of(engine, "M-2", "T2"))["last_value"] == "4567"

    clock.advance(days=1)
    half = await intake.submit(cabinet(clock, "1000002", {"T1": "12350"}))
    assert half.status is Status.REJECTED
    assert codes(half) == ["zones_mismatch"]
    assert half.reasons[0].message_ru == "Нужны показания всех зон, нет: Т2 (ночь)"
    after = await rows(engine, readings)
    assert [(r["zone"], r["verdict"]) for r in after[2:]] == [("T1", "rejected")]  # kept, never billed
    assert (await state_of(engine, "M-2", "T1"))["last_value"] == "12345.6"


# -- history --------------------------------------------------------------------------------------


async def test_chain_over_days(intake: Intake, engine: AsyncEngine, clock: FakeClock) -> None:
    v1 = await intake.submit(sms(clock, "12890"))
    clock.advance(days=1)
    v2 = await intake.submit(sms(clock, "12300"))
    clock.advance(days=1)
    v3 = await intake.submit(sms(clock, "12950"))

    assert v1.status is Status.ACCEPTED
    assert v2.status is Status.REJECTED and codes(v2) == ["lower_than_previous"]
    assert v2.reasons[0].message_ru == "12 300 меньше прежних 12 890 от 17.11. Проверьте"
    assert "lower than the previous 12 890 of 17 Nov" in v2.reasons[0].message_en
    assert v3.status is Status.ACCEPTED and v3.reasons == ()

    stored = await rows(engine, readings)
    assert [(r["value"], r["verdict"]) for r in stored] == [
        ("12890", "accepted"),
        ("12300", "rejected"),
        ("12950", "accepted"),
    ]
    assert "lower_than_previous" in stored[1]["reasons"]
    st = await state_of(engine, "M-1")
    assert (st["last_value"], st["last_receipt"], st["last_taken_at"]) == ("12950", v3.receipt, clock.now)
    assert totals(st) == (Decimal("60"), Decimal("2"))


async def test_days_in_explanations_are_moscow_days(intake: Intake, clock: FakeClock) -> None:
    clock.now = datetime(2026, 11, 16, 21, 30, tzinfo=UTC)  # 00:30 on 17 Nov in Moscow
    await intake.submit(sms(clock, "12890"))
    clock.advance(hours=12)
    v = await intake.submit(sms(clock, "12300"))
    assert v.reasons[0].message_ru == "12 300 меньше прежних 12 890 от 17.11. Проверьте"


async def test_impossible_consumption_through_the_intake(intake: Intake, clock: FakeClock) -> None:
    await intake.submit(device(clock, "M-1", "1000"))
    clock.advance(hours=2)
    v = await intake.submit(device(clock, "M-1", "1022"))
    assert v.status is Status.REJECTED and codes(v) == ["impossible_consumption"]
    assert v.reasons[0].message_ru == "расход 22 кВт·ч больше возможного 21. Проверьте"
    assert (await intake.submit(device(clock, "M-1", "1020"))).status is Status.ACCEPTED


async def test_held_readings_and_meter_state(
    engine: AsyncEngine, db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    eager = {"band_min_days": 0, "band_min_history_days": 0}
    config = make_config(
        db_url,
        tmp_path,
        validation={
            "residents": RuleThresholds(**eager),
            "devices": RuleThresholds(max_age_days=92, band_severity="flag", **eager),
        },
    )
    it = await start_intake(engine, config, clock)
    await it.submit(cabinet(clock, "1000001", {"T": "10000"}))
    clock.advance(days=1)
    v1 = await it.submit(cabinet(clock, "1000001", {"T": "10010"}))  # 10 kWh a day so far
    clock.advance(days=1)
    asked = await it.submit(cabinet(clock, "1000001", {"T": "10100"}))  # 90 kWh in a day
    assert asked.status is Status.NEEDS_CONFIRMATION
    assert codes(asked) == ["unexpected_consumption"]
    assert asked.reasons[0].message_ru == "расход 90 кВт·ч, обычно 6-17. Подтвердите или исправьте"
    st = await state_of(engine, "M-1")
    assert (st["last_value"], st["last_receipt"]) == ("10010", v1.receipt)
    assert totals(st) == (Decimal("10"), Decimal("1"))
    # nor does it within a group: the next one is judged against 10 010 again, not a repeat of it
    x, y = await it.submit_many(
        [
            cabinet(clock, "1000001", {"T": "10100"}, channel_message_id="c-x"),
            cabinet(clock, "1000001", {"T": "10100"}, channel_message_id="c-y"),
        ]
    )
    assert x.status is y.status is Status.NEEDS_CONFIRMATION
    assert not y.duplicate and y.receipt != x.receipt
    assert (await state_of(engine, "M-1"))["last_receipt"] == v1.receipt

    clock.advance(hours=6)
    flagged = await it.submit(device(clock, "M-1", "10100"))
    assert flagged.status is Status.FLAGGED
    assert set(codes(flagged)) == {"unexpected_consumption", "source_mismatch"}
    assert all(r.severity is Severity.FLAG for r in flagged.reasons)
    # held for the back office: not the history either, until someone accepts it
    st = await state_of(engine, "M-1")
    assert (st["last_value"], st["last_receipt"], st["dev_value"]) == ("10010", v1.receipt, None)
    assert totals(st) == (Decimal("10"), Decimal("1"))
    await it.stop()

    verdicts = [r["verdict"] for r in await rows(engine, readings)]
    assert verdicts == ["accepted", "accepted", *["needs_confirmation"] * 3, "flagged"]


async def test_next_period_after_the_cutoff(engine: AsyncEngine, db_url: str, tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))  # Thursday 26 Nov, 12:00 Moscow
    it = await start_intake(engine, make_config(db_url, tmp_path), clock)
    v = await it.submit(sms(clock, "12345"))
    assert v.status is Status.ACCEPTED and v.period == "2026-12"
    [note] = v.reasons
    assert (note.code, note.severity) == ("next_period", Severity.INFO)
    assert note.message_ru == "Учтём в декабре: приём до 25-го"
    bad = await it.submit(sms(clock, "12a"))
    assert codes(bad) == ["bad_value"]
    await it.stop()
    [r] = await rows(engine, readings)
    assert r["period"] == "2026-12" and r["verdict"] == "accepted"
    assert "next_period" in r["reasons"]
    assert (await state_of(engine, "M-1"))["last_period"] == "2026-12"


# -- group commit ---------------------------------------------------------------------------------


async def test_concurrent_submissions_share_commits(
    intake: Intake, engine: AsyncEngine, clock: FakeClock
) -> None:
    n = 200
    start = clock.now - timedelta(hours=3 * n)
    subs = [
        device(clock, "M-1", str(10000 + 5 * i), mid=f"g-{i}", taken_at=start + timedelta(hours=3 * i))
        for i in range(n)
    ]
    verdicts = await asyncio.gather(*(intake.submit(s) for s in subs))
    assert len(verdicts) == n
    assert [v.status for v in verdicts] == [Status.ACCEPTED] * n, {c for v in verdicts for c in codes(v)}
    assert len({v.receipt for v in verdicts}) == n
    assert await count(engine, inbound) == n
    assert await count(engine, readings) == n
    st = await state_of(engine, "M-1")
    assert st["last_value"] == str(10000 + 5 * (n - 1))
    assert st["last_receipt"] == verdicts[-1].receipt

    reg = intake.metrics.registry
    groups = reg.get_sample_value("gateway_intake_group_size_count")
    decided = reg.get_sample_value("gateway_intake_group_size_sum")
    assert decided == n
    assert groups is not None and 1 <= groups < n


async def test_readings_a_minute_apart_are_stored(
    intake: Intake, engine: AsyncEngine, clock: FakeClock, db_url: str, request: pytest.FixtureRequest
) -> None:
    await intake.submit(device(clock, "M-1", "100"))
    clock.advance(minutes=1)
    v = await intake.submit(device(clock, "M-1", "100.1"))
    assert v.status is Status.ACCEPTED
    assert (await state_of(engine, "M-1"))["last_value"] == "100.1"


# -- a broken database ----------------------------------------------------------------------------


async def test_broken_database_fails_the_submission_not_the_writer(
    engine: AsyncEngine, db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(db_url, tmp_path)
    await import_registry(engine, config.registry.csv or "")
    if db_url.startswith("sqlite"):
        broken_url = f"sqlite+aiosqlite:///{tmp_path / 'never-migrated.db'}"
    else:
        broken_url = db_url.rsplit("/", 1)[0] + "/mg_no_such_database"
    broken = create_engine(broken_url)
    it = Intake(broken, config, WorkCalendar(config.calendar.timezone), clock=clock)
    await it.start()
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
            await it.submit(sms(clock, "100", mid="sms-x"))
        with pytest.raises(Exception):  # noqa: B017
            await it.submit_many([sms(clock, "101"), sms(clock, "102")])
        # the database is back: the same writer task goes on
        it.engine = engine
        v = await it.submit(sms(clock, "100", mid="sms-x"))
        assert v.status is Status.ACCEPTED and v.duplicate is False
        assert await count(engine, inbound) == 1
    finally:
        await it.stop()
        await broken.dispose()


async def test_submit_before_start_is_refused(engine: AsyncEngine, db_url: str, tmp_path: Path) -> None:
    it = Intake(engine, make_config(db_url, tmp_path), WorkCalendar())
    with pytest.raises(RuntimeError):
        await it.submit(Submission(Channel.SMS, datetime.now(UTC), PHONE_M1, values={"T": "1"}))
    assert await it.submit_many([]) == []
