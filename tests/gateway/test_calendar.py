"""Tests for gateway.calendar: production calendar, due dates, notice hours and billing periods."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.calendar import CalendarOverrideError, WorkCalendar, billing_period, period_window, window_days

MSK = ZoneInfo("Europe/Moscow")
YEKT = ZoneInfo("Asia/Yekaterinburg")


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return WorkCalendar()


def msk(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    """An aware Moscow datetime, converted to UTC the way readings arrive."""
    return datetime(year, month, day, hour, minute, tzinfo=MSK).astimezone(UTC)


def write(tmp_path: Path, text: str, name: str = "branch-calendar.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- production calendar -------------------------------------------------------------------------


def test_transferred_day_off_2025_12_31(cal: WorkCalendar) -> None:
    assert date(2025, 12, 31).weekday() == 2  # a Wednesday
    assert not cal.is_working_day(date(2025, 12, 31))
    assert cal.is_public_holiday(date(2025, 12, 31))


def test_working_saturday_2025_11_01(cal: WorkCalendar) -> None:
    assert date(2025, 11, 1).weekday() == 5
    assert cal.is_working_day(date(2025, 11, 1))
    assert not cal.is_public_holiday(date(2025, 11, 1))
    # the Monday it was swapped for is off
    assert not cal.is_working_day(date(2025, 11, 3))


def test_new_year_2026(cal: WorkCalendar) -> None:
    assert not cal.is_working_day(date(2026, 1, 9))  # Friday, transferred from Sat 3 Jan
    assert cal.is_public_holiday(date(2026, 1, 9))
    for day in range(1, 12):
        assert not cal.is_working_day(date(2026, 1, day)), day
    assert cal.is_working_day(date(2026, 1, 12))
    assert cal.add_working_days(date(2025, 12, 31), 1) == date(2026, 1, 12)
    assert cal.add_working_days(date(2025, 12, 29), 1) == date(2025, 12, 30)


def test_ordinary_days(cal: WorkCalendar) -> None:
    assert cal.is_working_day(date(2026, 11, 20))  # Friday
    assert not cal.is_working_day(date(2026, 11, 21))  # Saturday
    assert not cal.is_working_day(date(2026, 11, 22))  # Sunday
    assert not cal.is_working_day(date(2026, 11, 4))  # Unity Day, Wednesday


def test_public_holiday_is_not_an_ordinary_weekend(cal: WorkCalendar) -> None:
    assert not cal.is_public_holiday(date(2026, 11, 21))  # ordinary Saturday
    assert not cal.is_public_holiday(date(2026, 11, 20))  # ordinary Friday
    assert cal.is_public_holiday(date(2026, 11, 4))  # Unity Day
    assert cal.is_public_holiday(date(2026, 1, 3))  # New Year holidays on a Saturday
    assert cal.is_public_holiday(date(2026, 3, 9))  # day off for 8 March falling on Sunday


def test_datetime_is_refused_where_a_date_is_expected(cal: WorkCalendar) -> None:
    with pytest.raises(TypeError):
        cal.is_working_day(datetime(2025, 12, 31, 12, 0))


def test_add_working_days_needs_positive_n(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError):
        cal.add_working_days(date(2026, 11, 20), 0)


# --- due_at ----------------------------------------------------------------------------------------


def test_due_at_over_new_year(cal: WorkCalendar) -> None:
    due = cal.due_at(msk(2025, 12, 30, 10, 0))
    assert due == datetime(2026, 1, 12, 21, 0, tzinfo=UTC)
    assert due.utcoffset() == timedelta(0)
    assert due.astimezone(MSK) == datetime(2026, 1, 13, 0, 0, tzinfo=MSK)
    assert due.astimezone(MSK).replace(tzinfo=None) == datetime(2026, 1, 13, 0, 0)


def test_due_at_friday_before_weekend(cal: WorkCalendar) -> None:
    due = cal.due_at(msk(2026, 11, 20, 18, 30))
    assert due.astimezone(MSK).replace(tzinfo=None) == datetime(2026, 11, 24, 0, 0)
    assert due == datetime(2026, 11, 23, 21, 0, tzinfo=UTC)


def test_due_at_saturday_receipt(cal: WorkCalendar) -> None:
    due = cal.due_at(msk(2026, 11, 21, 12, 0))
    assert due.astimezone(MSK).replace(tzinfo=None) == datetime(2026, 11, 24, 0, 0)


def test_due_at_two_working_days(cal: WorkCalendar) -> None:
    due = cal.due_at(msk(2026, 11, 20, 9, 0), working_days=2)
    assert due.astimezone(MSK).replace(tzinfo=None) == datetime(2026, 11, 25, 0, 0)
    # Tuesday 3 Nov 2026 + 2 skips Unity Day on Wednesday 4 Nov
    due = cal.due_at(msk(2026, 11, 3, 9, 0), working_days=2)
    assert due.astimezone(MSK).replace(tzinfo=None) == datetime(2026, 11, 7, 0, 0)


def test_due_at_uses_local_date_of_receipt(cal: WorkCalendar) -> None:
    # 21:30 UTC on Friday is already Saturday in Moscow
    received = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)
    assert cal.local_date(received) == date(2026, 11, 21)
    assert cal.due_at(received) == datetime(2026, 11, 23, 21, 0, tzinfo=UTC)


def test_due_at_is_cached_and_stable(cal: WorkCalendar) -> None:
    first = cal.due_at(msk(2025, 12, 30, 10, 0))
    again = cal.due_at(msk(2025, 12, 30, 23, 59))
    assert first == again


def test_naive_datetime_is_refused(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="aware"):
        cal.due_at(datetime(2026, 11, 20, 10, 0))
    with pytest.raises(ValueError, match="aware"):
        cal.quiet_hours_ok(datetime(2026, 11, 20, 10, 0))


def test_other_timezone_changes_local_date() -> None:
    ekb = WorkCalendar("Asia/Yekaterinburg")
    msk_cal = WorkCalendar("Europe/Moscow")
    assert ekb.timezone == YEKT
    moment = datetime(2026, 3, 2, 20, 30, tzinfo=UTC)  # Mon 23:30 MSK, Tue 01:30 YEKT
    assert msk_cal.local_date(moment) == date(2026, 3, 2)
    assert ekb.local_date(moment) == date(2026, 3, 3)
    assert ekb.local_datetime(moment) == datetime(2026, 3, 3, 1, 30, tzinfo=YEKT)
    # Moscow: end of Tue 3 Mar; Yekaterinburg: end of Wed 4 Mar, at its own midnight
    assert msk_cal.due_at(moment) == datetime(2026, 3, 3, 21, 0, tzinfo=UTC)
    assert ekb.due_at(moment) == datetime(2026, 3, 4, 19, 0, tzinfo=UTC)
    assert ekb.due_at(moment).astimezone(YEKT).replace(tzinfo=None) == datetime(2026, 3, 5, 0, 0)


def test_unknown_timezone() -> None:
    with pytest.raises(ValueError, match="Europe/Mscow"):
        WorkCalendar("Europe/Mscow")


# --- override file ---------------------------------------------------------------------------------


def test_override_adds_holiday_and_workday(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# dates the retailer's branch treats differently from the federal calendar\n"
        'holidays = ["2026-11-23"]        # extra days off\n'
        'workdays = ["2026-11-28"]        # extra working days (e.g. a working Saturday)\n',
    )
    cal = WorkCalendar(override_file=path)
    assert not cal.is_working_day(date(2026, 11, 23))
    assert cal.is_public_holiday(date(2026, 11, 23))
    assert cal.is_working_day(date(2026, 11, 28))
    # Friday 20 Nov: Monday 23 is now off -> end of Tuesday 24
    received = msk(2026, 11, 20, 12, 0)
    assert WorkCalendar().due_at(received).astimezone(MSK).date() == date(2026, 11, 24)
    assert cal.due_at(received).astimezone(MSK).replace(tzinfo=None) == datetime(2026, 11, 25, 0, 0)
    # Friday 27 Nov: Saturday 28 is now a working day -> end of Saturday
    received = msk(2026, 11, 27, 12, 0)
    assert WorkCalendar().due_at(received).astimezone(MSK).date() == date(2026, 12, 1)
    assert cal.due_at(received).astimezone(MSK).replace(tzinfo=None) == datetime(2026, 11, 29, 0, 0)


def test_override_workday_beats_federal_day_off(tmp_path: Path) -> None:
    cal = WorkCalendar(override_file=write(tmp_path, 'workdays = ["2025-12-31"]\n'))
    assert cal.is_working_day(date(2025, 12, 31))
    assert cal.due_at(msk(2025, 12, 30, 10, 0)) == datetime(2025, 12, 31, 21, 0, tzinfo=UTC)
    # residents are still on holiday, so notices stay forbidden
    assert cal.is_public_holiday(date(2025, 12, 31))


def test_override_multiline_and_toml_dates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'holidays = [\n  2026-11-25,\n  "2026-11-26",  # branch anniversary\n]\nworkdays = []\n',
    )
    cal = WorkCalendar(override_file=str(path))
    assert not cal.is_working_day(date(2026, 11, 25))
    assert not cal.is_working_day(date(2026, 11, 26))


def test_empty_override_file(tmp_path: Path) -> None:
    cal = WorkCalendar(override_file=write(tmp_path, "# nothing differs this year\n"))
    assert not cal.is_working_day(date(2025, 12, 31))


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("holidays = [2026-11-25\n", 1, "not valid TOML"),
        ("this is not toml\n", 1, "not valid TOML"),
        ('\nholidays = ["2026-02-30"]\n', 2, "bad date '2026-02-30'"),
        ('holidays = [\n  "2026-11-25",\n  "25.11.2026",\n]\n', 3, "bad date '25.11.2026'"),
        ('holidays = ["2026-11-25"]\n\nworkdays = ["2026-11-25"]\n', 3, "both 'holidays' and 'workdays'"),
        ('holidays = ["2026-11-25"]\nholydays = ["2026-11-26"]\n', 2, "unknown key 'holydays'"),
        ('holidays = "2026-11-25"\n', 1, "must be an array"),
        ("holidays = [20261125]\n", 1, "bad entry 20261125"),
        ("holidays = [2026-11-25T10:00:00]\n", 1, "bad entry"),
        ('[holidays]\n"2026-11-25" = true\n', 1, "must be an array"),
    ],
)
def test_malformed_override_file(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = write(tmp_path, text, name="kazan-branch.toml")
    with pytest.raises(CalendarOverrideError) as excinfo:
        WorkCalendar(override_file=path)
    err = excinfo.value
    assert isinstance(err, ValueError)
    assert "kazan-branch.toml" in str(err)
    assert f"kazan-branch.toml:{line}:" in str(err)
    assert err.line == line
    assert reason in str(err)


def test_missing_override_file(tmp_path: Path) -> None:
    with pytest.raises(CalendarOverrideError, match="absent.toml"):
        WorkCalendar(override_file=tmp_path / "absent.toml")


def test_override_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "cp1251.toml"
    path.write_bytes("# праздники\n".encode("cp1251"))
    with pytest.raises(CalendarOverrideError, match="cp1251.toml"):
        WorkCalendar(override_file=path)


# --- quiet hours -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hour", "minute", "ok"),
    [(9, 59, False), (10, 0, True), (20, 59, True), (21, 0, False), (0, 0, False)],
)
def test_quiet_hours_on_working_day(cal: WorkCalendar, hour: int, minute: int, ok: bool) -> None:
    assert cal.quiet_hours_ok(msk(2026, 11, 20, hour, minute)) is ok


def test_quiet_hours_on_public_holiday(cal: WorkCalendar) -> None:
    assert not cal.quiet_hours_ok(msk(2026, 11, 4, 12, 0))  # Unity Day
    assert not cal.quiet_hours_ok(msk(2025, 12, 31, 12, 0))  # transferred day off
    assert cal.quiet_hours_ok(msk(2026, 11, 21, 12, 0))  # an ordinary Saturday is allowed


def test_quiet_hours_use_local_time() -> None:
    ekb = WorkCalendar("Asia/Yekaterinburg")
    moment = datetime(2026, 11, 20, 5, 0, tzinfo=UTC)  # 08:00 MSK, 10:00 YEKT
    assert not WorkCalendar().quiet_hours_ok(moment)
    assert ekb.quiet_hours_ok(moment)
    # 16:00 UTC on 3 Nov is 21:00 YEKT, already too late there
    assert not ekb.quiet_hours_ok(datetime(2026, 11, 3, 16, 0, tzinfo=UTC))
    # 19:30 UTC on 3 Nov is 00:30 on Unity Day in Yekaterinburg
    assert ekb.local_date(datetime(2026, 11, 3, 19, 30, tzinfo=UTC)) == date(2026, 11, 4)


def test_quiet_hours_custom_bounds(cal: WorkCalendar) -> None:
    assert cal.quiet_hours_ok(msk(2026, 11, 20, 9, 0), start_hour=9, end_hour=20)
    assert not cal.quiet_hours_ok(msk(2026, 11, 20, 20, 0), start_hour=9, end_hour=20)
    with pytest.raises(ValueError):
        cal.quiet_hours_ok(msk(2026, 11, 20, 9, 0), start_hour=21, end_hour=10)


# --- billing periods -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "period"),
    [
        (date(2026, 11, 1), "2026-11"),
        (date(2026, 11, 15), "2026-11"),
        (date(2026, 11, 25), "2026-11"),
        (date(2026, 11, 26), "2026-12"),
        (date(2026, 11, 30), "2026-12"),
        (date(2025, 12, 25), "2025-12"),
        (date(2025, 12, 26), "2026-01"),
        (date(2025, 12, 31), "2026-01"),
        (date(2026, 1, 1), "2026-01"),
        (date(2026, 2, 28), "2026-03"),
    ],
)
def test_billing_period(day: date, period: str) -> None:
    assert billing_period(day) == period


def test_billing_period_custom_cutoff() -> None:
    assert billing_period(date(2026, 11, 20), window_start_day=10, cutoff_day=20) == "2026-12"
    assert billing_period(date(2026, 11, 19), window_start_day=10, cutoff_day=20) == "2026-11"


@pytest.mark.parametrize(("start", "cutoff"), [(26, 26), (27, 26), (0, 26), (15, 29), (-1, 5)])
def test_billing_window_validation(start: int, cutoff: int) -> None:
    with pytest.raises(ValueError):
        billing_period(date(2026, 11, 20), window_start_day=start, cutoff_day=cutoff)
    with pytest.raises(ValueError):
        period_window("2026-11", window_start_day=start, cutoff_day=cutoff)
    with pytest.raises(ValueError):
        window_days(start, cutoff)


def test_period_window() -> None:
    assert window_days() == (15, 25) and window_days(1, 28) == (1, 27)  # the last day: before the cut-off
    assert period_window("2026-11") == (date(2026, 11, 15), date(2026, 11, 25))
    assert period_window("2026-01") == (date(2026, 1, 15), date(2026, 1, 25))
    assert period_window("2026-02", window_start_day=1, cutoff_day=28) == (
        date(2026, 2, 1),
        date(2026, 2, 27),
    )


@pytest.mark.parametrize("period", ["2026-13", "2026-00", "2026-1", "26-11", "2026/11", "", "2026-11-01"])
def test_period_window_rejects_bad_period(period: str) -> None:
    with pytest.raises(ValueError):
        period_window(period)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
def test_window_days_count_for_their_own_period(day: date) -> None:
    period = billing_period(day)
    start, end = period_window(period)
    assert period >= f"{day.year:04d}-{day.month:02d}"
    if start <= day <= end:
        assert period == f"{day.year:04d}-{day.month:02d}"
    assert billing_period(start) == billing_period(end) == period


@given(
    st.dates(min_value=date(2024, 1, 1), max_value=date(2027, 12, 31)),
    st.integers(min_value=1, max_value=10),
)
def test_add_working_days_lands_on_the_nth_working_day(day: date, n: int) -> None:
    cal = _shared_cal
    result = cal.add_working_days(day, n)
    assert cal.is_working_day(result)
    between = [day + timedelta(days=i) for i in range(1, (result - day).days + 1)]
    assert sum(cal.is_working_day(d) for d in between) == n


_shared_cal = WorkCalendar()


def test_a_calendar_in_another_zone_keeps_the_overrides_and_is_made_once(tmp_path: Path) -> None:
    override = tmp_path / "holidays.toml"
    override.write_text('holidays = ["2026-12-07"]\n', encoding="utf-8")
    moscow = WorkCalendar("Europe/Moscow", override)
    assert moscow.in_zone(None) is moscow and moscow.in_zone("Europe/Moscow") is moscow
    vladivostok = moscow.in_zone("Asia/Vladivostok")
    assert vladivostok is moscow.in_zone("Asia/Vladivostok")
    # 11:00 in Vladivostok on the overridden holiday is no time for a notice there, 04:00 in Moscow neither
    moment = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    assert not vladivostok.quiet_hours_ok(moment)
    assert vladivostok.quiet_hours_ok(datetime(2026, 12, 8, 1, 0, tzinfo=UTC))  # 11:00 there, a Tuesday
