"""The validation rules one by one, through `evaluate`, with no database.

Every test builds the meter, the zone's history and the thresholds by hand and checks the
status, the reason's code and severity, and the explanation built from the actual numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.config import RuleThresholds
from gateway.model import Reason, RuleGroup, Severity, Status
from gateway.validation.context import MeterInfo, ZoneState
from gateway.validation.evaluate import Evaluation, evaluate, parse_value
from gateway.validation.explain import day_en, day_ru, num

# Monday 25 May 2026, 12:00 in Moscow.
NOW = datetime(2026, 5, 25, 9, 0, tzinfo=UTC)
PERIOD = "2026-05"
SMS_MAX = 70


def meter(
    zones: tuple[str, ...] = ("T",),
    digits: int = 6,
    max_power_kw: Decimal | None = Decimal("10"),
    active: bool = True,
    serial: str = "M-1",
) -> MeterInfo:
    return MeterInfo(
        id=1,
        account_id=1,
        account="1000001",
        serial=serial,
        zones=zones,
        digits=digits,
        max_power_kw=max_power_kw,
        active=active,
    )


def history(
    value: str,
    taken_at: datetime,
    *,
    receipt: int | None = 7,
    period: str = PERIOD,
    total_kwh: str = "0",
    total_days: str = "0",
    **kw: Any,
) -> ZoneState:
    return ZoneState(
        last_value=Decimal(value),
        last_taken_at=taken_at,
        last_receipt=receipt,
        last_period=period,
        total_kwh=Decimal(total_kwh),
        total_days=Decimal(total_days),
        **kw,
    )


def run(
    values: Mapping[str, object],
    *,
    m: MeterInfo | None = None,
    taken_at: datetime = NOW,
    now: datetime = NOW,
    period: str = PERIOD,
    note: Reason | None = None,
    group: RuleGroup = RuleGroup.RESIDENTS,
    limits: RuleThresholds | None = None,
    states: Mapping[str, ZoneState] | None = None,
) -> Evaluation:
    return evaluate(
        meter=m or meter(),
        values=values,
        taken_at=taken_at,
        now=now,
        period=period,
        period_note=note,
        group=group,
        limits=limits or RuleThresholds(),
        states=states or {},
    )


def only(ev: Evaluation) -> Reason:
    assert len(ev.reasons) == 1, [r.code for r in ev.reasons]
    return ev.reasons[0]


def assert_fits_sms(r: Reason) -> None:
    assert len(r.message_ru) <= SMS_MAX, (len(r.message_ru), r.message_ru)


# -- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["12a45", "", "-5", "1.2345", "12,34,5", "1e5", "  ", True, None, [1]])
def test_bad_value_is_rejected_with_an_example(raw: object) -> None:
    ev = run({"T": raw})
    assert ev.status is Status.REJECTED
    r = only(ev)
    assert (r.code, r.severity, r.zone) == ("bad_value", Severity.REJECT, "T")
    assert f"«{str(raw)[:12]}» не число" in r.message_ru
    assert "Пример: 12345 или 12345,6" in r.message_ru
    assert "is not a meter value" in r.message_en
    assert ev.values == {}
    assert_fits_sms(r)


def test_bad_value_of_a_two_zone_meter_names_the_zone() -> None:
    ev = run({"T1": "12345", "T2": "45x"}, m=meter(("T1", "T2")))
    r = only(ev)
    assert (r.code, r.zone) == ("bad_value", "T2")
    assert r.message_ru == "Т2: «45x» не число. Пример: 12345 или 12345,6"
    assert ev.values == {"T1": Decimal("12345")}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12345", "12345"),
        ("12345,6", "12345.6"),
        ("12 345.678", "12345.678"),
        ("12\u00a0345", "12345"),
        (" 00123 ", "123"),
        (12345, "12345"),
        (12345.6, "12345.6"),
        (Decimal("12345.60"), "12345.6"),
    ],
)
def test_numbers_are_accepted_exactly(raw: object, expected: str) -> None:
    assert parse_value(raw) == Decimal(expected)
    ev = run({"T": raw})
    assert ev.status is Status.ACCEPTED and ev.reasons == []
    assert ev.values == {"T": Decimal(expected)}


def test_three_decimals_are_kept_four_are_refused() -> None:
    assert parse_value("1.234") == Decimal("1.234")
    assert parse_value("1.2345") is None
    assert parse_value(-5) is None
    assert parse_value(Decimal("-5")) is None
    assert parse_value(Decimal("NaN")) is None


def test_no_values() -> None:
    ev = run({})
    r = only(ev)
    assert ev.status is Status.REJECTED
    assert (r.code, r.severity) == ("no_values", Severity.REJECT)
    assert r.message_ru == "Нет показаний в сообщении"


def test_unknown_zone_lists_the_meters_zones() -> None:
    ev = run({"T1": "100"}, m=meter(("T",)))
    r = only(ev)
    assert ev.status is Status.REJECTED
    assert (r.code, r.severity) == ("unknown_zone", Severity.REJECT)
    assert r.message_ru == "У счётчика нет зоны T1; зоны: T"
    assert "meter M-1 has no zone T1" in r.message_en

    ev = run({"T1": "1", "T2": "2", "T3": "3"}, m=meter(("T1", "T2")))
    r = only(ev)
    assert r.code == "unknown_zone"
    assert r.message_ru == "У счётчика нет зоны T3; зоны: T1, T2"


def test_two_zone_meter_given_only_t1() -> None:
    ev = run({"T1": "12345"}, m=meter(("T1", "T2")))
    r = only(ev)
    assert ev.status is Status.REJECTED
    assert (r.code, r.severity) == ("zones_mismatch", Severity.REJECT)
    assert r.message_ru == "Нужны показания всех зон, нет: Т2 (ночь)"
    assert "missing T2" in r.message_en


def test_too_many_digits_for_a_six_digit_counter() -> None:
    ev = run({"T": "1234567"}, m=meter(digits=6))
    r = only(ev)
    assert ev.status is Status.REJECTED
    assert (r.code, r.severity, r.zone) == ("too_many_digits", Severity.REJECT, "T")
    assert r.message_ru == "1 234 567: у счётчика 6 цифр до запятой. Проверьте"
    assert "1 234 567 has more integer digits than the meter's 6" in r.message_en
    assert_fits_sms(r)
    # six integer digits and decimals fit
    assert run({"T": "999999.999"}, m=meter(digits=6)).status is Status.ACCEPTED


def test_too_many_digits_is_not_also_impossible_consumption() -> None:
    states = {"T": history("12345", NOW - timedelta(days=1))}
    ev = run({"T": "1234567"}, m=meter(digits=6), states=states)
    assert [r.code for r in ev.reasons] == ["too_many_digits"]


# -- time ---------------------------------------------------------------------------------------


def test_future_reading_beyond_the_clock_skew() -> None:
    ev = run({"T": "100"}, taken_at=NOW + timedelta(seconds=301))
    r = only(ev)
    assert ev.status is Status.REJECTED
    assert (r.code, r.severity) == ("future_reading", Severity.REJECT)
    assert r.message_ru == "Дата показаний в будущем. Проверьте часы устройства"
    assert "in the future" in r.message_en


def test_future_reading_within_the_clock_skew_is_accepted() -> None:
    assert run({"T": "100"}, taken_at=NOW + timedelta(seconds=300)).status is Status.ACCEPTED
    tight = RuleThresholds(clock_skew_seconds=10)
    assert run({"T": "100"}, taken_at=NOW + timedelta(seconds=11), limits=tight).status is Status.REJECTED


def test_too_old_by_group() -> None:
    old = NOW - timedelta(days=46)
    ev = run({"T": "100"}, taken_at=old)
    r = only(ev)
    assert ev.status is Status.REJECTED
    assert (r.code, r.severity) == ("too_old", Severity.REJECT)
    assert r.message_ru == "Показания старше 45 дн. не принимаются"
    assert r.message_en == "reading taken 9 Apr is older than 45 days"
    assert run({"T": "100"}, taken_at=NOW - timedelta(days=45)).status is Status.ACCEPTED
    devices = RuleThresholds(max_age_days=92)
    assert run({"T": "100"}, taken_at=old, group=RuleGroup.DEVICES, limits=devices).status is Status.ACCEPTED


def test_before_previous_is_the_only_reason() -> None:
    states = {"T": history("12000", datetime(2026, 5, 24, 9, 0, tzinfo=UTC))}
    # earlier and lower: it is not "lower than previous", it is older than the last reading
    ev = run({"T": "11990"}, taken_at=datetime(2026, 5, 23, 9, 0, tzinfo=UTC), states=states)
    r = only(ev)
    assert ev.status is Status.REJECTED
    assert (r.code, r.severity) == ("before_previous", Severity.REJECT)
    assert r.message_ru == "Есть более поздние показания от 24.05"
    assert r.message_en == "a later reading of 24 May is already stored"


# -- lower, rollover, impossible ------------------------------------------------------------------


def test_lower_than_previous_names_the_previous_value_and_day() -> None:
    states = {"T": history("12890", datetime(2026, 5, 24, 9, 0, tzinfo=UTC))}
    ev = run({"T": "12300"}, states=states)
    r = only(ev)
    assert ev.status is Status.REJECTED
    assert (r.code, r.severity, r.zone) == ("lower_than_previous", Severity.REJECT, "T")
    assert r.message_ru == "12 300 меньше прежних 12 890 от 24.05. Проверьте"
    assert "12 300 is lower than the previous 12 890 of 24 May" in r.message_en
    assert_fits_sms(r)


def test_lower_than_previous_on_a_zone_of_a_two_zone_meter() -> None:
    at = datetime(2026, 5, 24, 9, 0, tzinfo=UTC)
    states = {"T1": history("12890", at), "T2": history("5000", at)}
    ev = run({"T1": "12900", "T2": "4999.5"}, m=meter(("T1", "T2")), states=states)
    r = only(ev)
    assert (r.code, r.zone) == ("lower_than_previous", "T2")
    assert r.message_ru == "Т2: 4 999.5 меньше прежних 5 000 от 24.05. Проверьте"


def test_days_are_told_in_moscow_time() -> None:
    # 21:30 UTC on the 24th is 00:30 on the 25th in Moscow: the resident took it on the 25th.
    states = {"T": history("12890", datetime(2026, 5, 24, 21, 30, tzinfo=UTC))}
    r = only(run({"T": "12300"}, states=states))
    assert "от 25.05" in r.message_ru
    assert "of 25 May" in r.message_en
    # another configured zone
    ev = evaluate(
        meter=meter(),
        values={"T": "12300"},
        taken_at=NOW,
        now=NOW,
        period=PERIOD,
        period_note=None,
        group=RuleGroup.RESIDENTS,
        limits=RuleThresholds(),
        states=states,
        tz=ZoneInfo("America/New_York"),
    )
    assert "от 24.05" in only(ev).message_ru


def test_rollover_of_a_five_digit_counter_is_accepted_with_the_wrapped_consumption() -> None:
    states = {"T": history("99990", NOW - timedelta(hours=10))}
    ev = run({"T": "5"}, m=meter(digits=5, max_power_kw=Decimal("10")), states=states)
    assert ev.status is Status.ACCEPTED
    r = only(ev)
    assert (r.code, r.severity) == ("rollover", Severity.INFO)
    assert r.message_ru == "счётчик перешёл через ноль, расход 15 кВт·ч"
    assert "consumption 15 kWh" in r.message_en
    assert ev.consumption == {"T": Decimal(15)}


def test_rollover_impossible_within_a_minute_is_lower_than_previous() -> None:
    states = {"T": history("99990", NOW - timedelta(minutes=1))}
    ev = run({"T": "5"}, m=meter(digits=5, max_power_kw=Decimal("10")), states=states)
    assert ev.status is Status.REJECTED
    r = only(ev)
    assert r.code == "lower_than_previous"
    assert r.message_ru == "5 меньше прежних 99 990 от 25.05. Проверьте"


def test_impossible_consumption_at_permitted_power() -> None:
    # 10 kW for 2 h is 20 kWh, plus 1 kWh for rounding
    states = {"T": history("1000", NOW - timedelta(hours=2))}
    ev = run({"T": "1022"}, states=states)
    assert ev.status is Status.REJECTED
    r = only(ev)
    assert (r.code, r.severity) == ("impossible_consumption", Severity.REJECT)
    assert r.message_ru == "расход 22 кВт·ч больше возможного 21. Проверьте"
    assert r.message_en == "consumption of 22 kWh exceeds the 21 kWh possible at 10 kW in 2 h"
    for ok in ("1020", "1021"):
        ev = run({"T": ok}, states=states)
        assert ev.status is Status.ACCEPTED, ok
        assert ev.consumption == {"T": Decimal(ok) - 1000}
    assert run({"T": "1021.001"}, states=states).status is Status.REJECTED


def test_impossible_consumption_shows_a_short_limit() -> None:
    # an interval of odd seconds must not print the limit with 28 digits
    states = {"T": history("1000", NOW - timedelta(hours=2, seconds=7))}
    r = only(run({"T": "1100"}, states=states))
    assert r.code == "impossible_consumption"
    assert r.message_ru == "расход 100 кВт·ч больше возможного 21. Проверьте"
    assert_fits_sms(r)


def test_default_max_power_when_the_meter_has_none() -> None:
    states = {"T": history("1000", NOW - timedelta(hours=2))}
    no_power = meter(max_power_kw=None)
    # default 15 kW: 30 + 1
    assert run({"T": "1031"}, m=no_power, states=states).status is Status.ACCEPTED
    r = only(run({"T": "1032"}, m=no_power, states=states))
    assert r.code == "impossible_consumption"
    assert "больше возможного 31" in r.message_ru
    # configured default 5 kW: 10 + 1
    five = RuleThresholds(default_max_power_kw=Decimal("5"))
    assert run({"T": "1011"}, m=no_power, states=states, limits=five).status is Status.ACCEPTED
    r = only(run({"T": "1012"}, m=no_power, states=states, limits=five))
    assert "at 5 kW in 2 h" in r.message_en
    # the meter's own power wins over the default
    assert (
        run({"T": "1012"}, m=meter(max_power_kw=Decimal("10")), states=states, limits=five).status
        is Status.ACCEPTED
    )


# -- expected consumption (SAP IS-U bands) --------------------------------------------------------

RESIDENTS = RuleThresholds()  # band_severity confirm
DEVICES = RuleThresholds(max_age_days=92, band_severity="flag")


def band_history(daily: str, days: int = 30, history_days: int = 60) -> dict[str, ZoneState]:
    """A meter that used `daily` kWh a day over `history_days`, last read `days` days ago."""
    return {
        "T": history(
            "10000",
            NOW - timedelta(days=days),
            total_kwh=str(Decimal(daily) * history_days),
            total_days=str(history_days),
        )
    }


def used(kwh: str) -> dict[str, str]:
    return {"T": str(Decimal("10000") + Decimal(kwh))}


@pytest.mark.parametrize(
    ("daily", "low", "high", "low_ru", "high_ru"),
    [
        # expected 60 kWh (< 100): +70 % / -40 %
        ("2", "36", "102", "36", "102"),
        # expected 300 kWh (100-999): +60 % / -30 %
        ("10", "210", "480", "210", "480"),
        # expected 3000 kWh (1000 and above): +50 % / -20 %
        ("100", "2400", "4500", "2 400", "4 500"),
    ],
)
def test_band_edges(daily: str, low: str, high: str, low_ru: str, high_ru: str) -> None:
    states = band_history(daily)
    big = meter(max_power_kw=Decimal("50"))
    for edge in (low, high):
        ev = run(used(edge), m=big, states=states)
        assert ev.status is Status.ACCEPTED, (edge, ev.reasons)
        assert ev.consumption == {"T": Decimal(edge)}
    for outside in (str(Decimal(low) - Decimal("0.001")), str(Decimal(high) + Decimal("0.001"))):
        ev = run(used(outside), m=big, states=states)
        assert ev.status is Status.NEEDS_CONFIRMATION, outside
        r = only(ev)
        assert (r.code, r.severity) == ("unexpected_consumption", Severity.CONFIRM)
        assert r.message_ru == (
            f"расход {num(Decimal(outside))} кВт·ч, обычно {low_ru}-{high_ru}. Подтвердите или исправьте"
        )
        assert f"outside the expected {low_ru}-{high_ru} kWh for 30 days" in r.message_en
        assert_fits_sms(r)


def test_band_is_chosen_by_the_expected_amount_at_its_boundary() -> None:
    # expected exactly 100 kWh is no longer "below 100": +60 % (160), not +70 % (170)
    states = {"T": history("10000", NOW - timedelta(days=30), total_kwh="100", total_days="30")}
    assert run(used("160"), states=states).status is Status.ACCEPTED
    assert run(used("161"), states=states).status is Status.NEEDS_CONFIRMATION
    assert run(used("70"), states=states).status is Status.ACCEPTED  # -30 %
    assert run(used("69"), states=states).status is Status.NEEDS_CONFIRMATION


def test_band_for_devices_flags_instead_of_asking() -> None:
    states = band_history("10")
    ev = run(used("481"), states=states, group=RuleGroup.DEVICES, limits=DEVICES)
    assert ev.status is Status.FLAGGED
    r = only(ev)
    assert (r.code, r.severity) == ("unexpected_consumption", Severity.FLAG)
    assert r.message_ru == "расход 481 кВт·ч, обычно 210-480. Проверим"
    ev = run(used("209"), states=states, group=RuleGroup.DEVICES, limits=DEVICES)
    assert ev.status is Status.FLAGGED


def test_band_counts_a_rollover() -> None:
    states = {
        "T": history("99900", NOW - timedelta(days=30), total_kwh="600", total_days="60"),
    }
    # 10 kWh a day, 30 days: 210-480 expected; wrapped 100 + 50 = 150 is too little
    ev = run({"T": "50"}, m=meter(digits=5), states=states)
    assert [r.code for r in ev.reasons] == ["rollover", "unexpected_consumption"]
    assert ev.status is Status.NEEDS_CONFIRMATION
    assert "расход 150 кВт·ч" in ev.reasons[1].message_ru


def test_band_not_applied_over_a_short_history_or_interval() -> None:
    far_off = used("2000")  # expected 300
    # history of 27 days < band_min_history_days 28
    short_history = band_history("10", history_days=27)
    assert run(far_off, states=short_history).status is Status.ACCEPTED
    assert run(far_off, states=band_history("10", history_days=28)).status is Status.NEEDS_CONFIRMATION
    # interval of 19 days < band_min_days 20
    assert run(used("2000"), states=band_history("10", days=19)).status is Status.ACCEPTED
    assert run(used("2000"), states=band_history("10", days=20)).status is Status.NEEDS_CONFIRMATION
    # no history at all
    assert run(far_off, states=band_history("10", history_days=0)).status is Status.ACCEPTED
    # thresholds per group: a group without a minimum judges at once
    eager = RuleThresholds(band_min_history_days=0, band_min_days=0)
    assert run(far_off, states=band_history("10", history_days=1), limits=eager).status is (
        Status.NEEDS_CONFIRMATION
    )


def test_no_bands_configured_means_no_band_check() -> None:
    assert (
        run(used("2000"), states=band_history("10"), limits=RuleThresholds(bands=[])).status
        is Status.ACCEPTED
    )


# -- resident against device ----------------------------------------------------------------------


def cross_state(
    dev: str | None = None, res: str | None = None, at: datetime = NOW - timedelta(days=1)
) -> dict[str, ZoneState]:
    value = dev or res or "0"
    return {
        "T": history(
            value,
            at,
            dev_value=None if dev is None else Decimal(dev),
            dev_taken_at=None if dev is None else at,
            res_value=None if res is None else Decimal(res),
            res_taken_at=None if res is None else at,
        )
    }


def test_resident_far_from_the_device_is_flagged() -> None:
    # no history: 10 kWh a day assumed; 1 day apart -> 5 + 10 * 1.5 = 20 kWh allowed
    ev = run({"T": "12100"}, states=cross_state(dev="12000"))
    assert ev.status is Status.FLAGGED
    r = only(ev)
    assert (r.code, r.severity) == ("source_mismatch", Severity.FLAG)
    assert r.message_ru == "расходится с данными счётчика (12 000 от 24.05)"
    assert r.message_en == "differs by 100 kWh from the device reading 12 000 of 24 May"


def test_resident_close_to_the_device_is_accepted() -> None:
    assert run({"T": "12020"}, states=cross_state(dev="12000")).status is Status.ACCEPTED
    assert run({"T": "12021"}, states=cross_state(dev="12000")).status is Status.FLAGGED


def test_device_far_from_the_resident_is_flagged_and_severity_is_configured() -> None:
    ev = run({"T": "12100"}, states=cross_state(res="12000"), group=RuleGroup.DEVICES, limits=DEVICES)
    r = only(ev)
    assert ev.status is Status.FLAGGED
    assert r.message_ru == "расходится с данными абонента (12 000 от 24.05)"
    assert "from the resident reading" in r.message_en
    confirm = RuleThresholds(cross_check_severity="confirm", cross_check_tolerance_kwh=Decimal("200"))
    assert run({"T": "12100"}, states=cross_state(dev="12000"), limits=confirm).status is Status.ACCEPTED
    strict = RuleThresholds(cross_check_severity="confirm")
    assert run({"T": "12100"}, states=cross_state(dev="12000"), limits=strict).status is (
        Status.NEEDS_CONFIRMATION
    )


def test_sources_more_than_a_month_apart_are_not_compared() -> None:
    states = cross_state(dev="12000", at=NOW - timedelta(days=32))
    ev = run({"T": "12500"}, states=states, limits=RuleThresholds(max_age_days=92))
    assert [r.code for r in ev.reasons] == []


# -- control readings (inspectors') ------------------------------------------------------------------


def control_state(
    control: str, at: datetime, last: str = "", last_at: datetime | None = None
) -> dict[str, ZoneState]:
    """The zone's latest control reading (taken `at`), 10 kWh a day of history, its last value
    `last` taken `last_at` (by default the control reading itself)."""
    return {
        "T": history(
            last or control,
            last_at or at,
            total_kwh="300",
            total_days="30",
            ctl_value=Decimal(control),
            ctl_taken_at=at,
        )
    }


def test_a_reading_far_above_the_control_reading_is_held_with_both_values() -> None:
    # 2 days after the visit: up to 12000 + 10 x 2 x 1.5 + 10 = 12040 is believable
    states = control_state("12000", NOW - timedelta(days=2))
    assert run({"T": "12040"}, states=states).status is Status.ACCEPTED
    ev = run({"T": "12041"}, states=states)
    assert ev.status is Status.FLAGGED
    r = only(ev)
    assert (r.code, r.severity, r.zone) == ("control_mismatch", Severity.FLAG, "T")
    assert r.message_ru == "расходится с контрольным показанием 12 000 от 23.05. Проверим"
    assert r.message_en == "12 041 differs from the control reading 12 000 of 23 May (expected 11 990-12 040)"
    assert_fits_sms(r)


def test_a_reading_taken_before_the_visit_lies_below_the_control_reading() -> None:
    # taken 2 days before the inspector's 12000: from 12000 - 10 x 2 x 1.5 - 10 = 11960 to 12010
    states = control_state("12000", NOW - timedelta(days=1), last="11800", last_at=NOW - timedelta(days=10))
    before = NOW - timedelta(days=3)
    assert run({"T": "12010"}, taken_at=before, states=states).status is Status.ACCEPTED
    assert only(run({"T": "12011"}, taken_at=before, states=states)).code == "control_mismatch"
    assert run({"T": "11960"}, taken_at=before, states=states).status is Status.ACCEPTED
    assert only(run({"T": "11959"}, taken_at=before, states=states)).code == "control_mismatch"


def test_control_readings_themselves_and_devices_are_not_compared() -> None:
    states = control_state("12000", NOW - timedelta(days=2))
    ev = evaluate(
        meter=meter(),
        values={"T": "12300"},
        taken_at=NOW,
        now=NOW,
        period=PERIOD,
        period_note=None,
        group=RuleGroup.OPERATORS,
        limits=RuleThresholds(),
        states=states,
        control=True,
    )
    assert ev.status is Status.ACCEPTED
    assert only(run({"T": "12300"}, states=states)).code == "control_mismatch"
    devices = RuleThresholds(control_tolerance_kwh=None)
    assert run({"T": "12300"}, states=states, limits=devices).status is Status.ACCEPTED
    wide = RuleThresholds(control_tolerance_kwh=Decimal("500"))
    assert run({"T": "12300"}, states=states, limits=wide).status is Status.ACCEPTED


# -- next period ----------------------------------------------------------------------------------

NEXT = Reason("next_period", Severity.INFO, "Учтём в июне: приём до 25-го", "counted for 2026-06")


def test_next_period_note_is_appended_when_accepted_or_held() -> None:
    ev = run({"T": "100"}, note=NEXT, period="2026-06")
    assert ev.status is Status.ACCEPTED
    assert ev.reasons == [NEXT]
    ev = run({"T": "12100"}, note=NEXT, period="2026-06", states=cross_state(dev="12000"))
    assert ev.status is Status.FLAGGED
    assert [r.code for r in ev.reasons] == ["source_mismatch", "next_period"]


def test_next_period_note_is_not_given_with_a_rejection() -> None:
    ev = run({"T": "12a"}, note=NEXT)
    assert ev.status is Status.REJECTED
    assert [r.code for r in ev.reasons] == ["bad_value"]
    states = {"T": history("12890", NOW - timedelta(days=1))}
    assert [r.code for r in run({"T": "12300"}, note=NEXT, states=states).reasons] == ["lower_than_previous"]


# -- exact repeats --------------------------------------------------------------------------------


def by_resident(value: str, at: datetime, **kw: Any) -> ZoneState:
    """History whose last reading came from a resident."""
    return history(value, at, res_value=Decimal(value), res_taken_at=at, **kw)


def test_resident_repeat_in_the_same_period_is_a_duplicate() -> None:
    states = {"T": by_resident("12345", NOW - timedelta(hours=3), receipt=77)}
    ev = run({"T": "12345"}, states=states)
    assert ev.duplicate is True
    assert ev.duplicate_of == 77
    assert ev.status is Status.ACCEPTED and ev.reasons == []


def test_resident_giving_the_devices_value_is_a_reading_of_their_own() -> None:
    at = NOW - timedelta(hours=3)
    states = {"T": history("12345", at, receipt=77, dev_value=Decimal("12345"), dev_taken_at=at)}
    ev = run({"T": "12345"}, states=states)
    assert ev.duplicate is False
    assert ev.status is Status.ACCEPTED and ev.consumption == {"T": Decimal(0)}


def test_resident_same_value_in_another_period_is_new() -> None:
    states = {"T": history("12345", NOW - timedelta(days=30), receipt=77, period="2026-04")}
    ev = run({"T": "12345"}, states=states)
    assert ev.duplicate is False
    assert ev.status is Status.ACCEPTED
    assert ev.consumption == {"T": Decimal(0)}


def test_duplicate_of_a_reading_decided_earlier_in_the_same_group() -> None:
    owner = object()
    states = {"T": by_resident("12345", NOW - timedelta(hours=1), receipt=None, last_owner=owner)}
    ev = run({"T": "12345"}, states=states)
    assert ev.duplicate and ev.duplicate_of is None and ev.duplicate_owner is owner


def test_device_repeat_of_the_same_sample_is_a_duplicate() -> None:
    at = NOW - timedelta(minutes=5)
    states = {"T": history("12345", at, receipt=5)}
    ev = run({"T": "12345"}, taken_at=at, states=states, group=RuleGroup.DEVICES, limits=DEVICES)
    assert ev.duplicate and ev.duplicate_of == 5


def test_device_same_value_at_another_moment_is_a_new_reading() -> None:
    states = {"T": history("12345", NOW - timedelta(minutes=5), receipt=5)}
    ev = run({"T": "12345"}, states=states, group=RuleGroup.DEVICES, limits=DEVICES)
    assert ev.duplicate is False
    assert ev.status is Status.ACCEPTED and ev.reasons == []
    assert ev.consumption == {"T": Decimal(0)}


def test_repeat_needs_every_zone_equal_and_from_one_message() -> None:
    at = NOW - timedelta(hours=1)
    two = meter(("T1", "T2"))
    same = {"T1": by_resident("100", at, receipt=9), "T2": by_resident("50", at, receipt=9)}
    assert run({"T1": "100", "T2": "50"}, m=two, states=same).duplicate
    assert not run({"T1": "100", "T2": "51"}, m=two, states=same).duplicate
    mixed = {"T1": by_resident("100", at, receipt=9), "T2": by_resident("50", at, receipt=10)}
    assert not run({"T1": "100", "T2": "50"}, m=two, states=mixed).duplicate


# -- meter ----------------------------------------------------------------------------------------


def test_inactive_meter() -> None:
    ev = run({"T": "100"}, m=meter(active=False, serial="M-77"))
    r = only(ev)
    assert ev.status is Status.REJECTED
    assert (r.code, r.severity) == ("inactive_meter", Severity.REJECT)
    assert r.message_ru == "Счётчик M-77 снят с учёта. Позвоните нам"
    assert r.message_en == "meter M-77 is no longer active on account 1000001"
    long = only(run({"T": "1"}, m=meter(active=False, serial="X" * 64)))
    assert_fits_sms(long)


def test_first_reading_has_no_consumption() -> None:
    ev = run({"T": "100"})
    assert ev.status is Status.ACCEPTED and ev.consumption == {"T": None}


# -- how numbers and days are written --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("12345.6", "12 345.6"),
        ("12345.60", "12 345.6"),
        ("1000000", "1 000 000"),
        ("1E+6", "1 000 000"),
        ("0.5", "0.5"),
        ("0", "0"),
        ("100", "100"),
        ("1000", "1 000"),
        ("12345.678", "12 345.678"),
        ("-1234.5", "-1 234.5"),
    ],
)
def test_num(value: str, text: str) -> None:
    assert num(Decimal(value)) == text


def test_days() -> None:
    assert day_ru(datetime(2026, 5, 4, 9, 0, tzinfo=UTC)) == "04.05"
    assert day_en(datetime(2026, 5, 4, 9, 0, tzinfo=UTC)) == "4 May"
    assert day_ru(datetime(2026, 12, 31, 21, 0, tzinfo=UTC)) == "01.01"  # midnight in Moscow
    assert day_en(datetime(2026, 12, 31, 21, 0, tzinfo=UTC)) == "1 Jan"
