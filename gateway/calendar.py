"""Working-day calendar and billing-period arithmetic for the retailer.

Working days follow the Russian production calendar as published by the
``holidays`` package (``holidays.RU``): Saturdays and Sundays are days off,
public holidays and the days off transferred by government decree are days
off, and Saturdays/Sundays that a decree turns into working days
(``weekend_workdays``, e.g. Saturday 2025-11-01) are working days.  Federal
years are loaded lazily, the first time a day of that year is asked about.

A branch may differ from the federal calendar (regional holidays, a decree
newer than the installed ``holidays`` release).  Such dates go into an
optional TOML override file, which wins over the federal calendar::

    # dates the retailer's branch treats differently from the federal calendar
    holidays = ["2026-11-25"]        # extra days off
    workdays = ["2026-11-28"]        # extra working days (e.g. a working Saturday)

Both keys are optional; their values are arrays of ``"YYYY-MM-DD"`` strings
(bare TOML dates such as ``2026-11-25`` are accepted too).  Any other key, a
value that is not such a date, or a date listed under both keys makes the
constructor raise :class:`CalendarOverrideError`.

Extra days off from the override file also count as public holidays for the
notice rules (:meth:`WorkCalendar.is_public_holiday`); extra working days do
NOT clear a federal holiday there, because residents are still on holiday
when the branch works.
"""

from __future__ import annotations

import re
import threading
import tomllib
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

__all__ = [
    "CalendarOverrideError",
    "WorkCalendar",
    "billing_period",
    "period_window",
]

_OVERRIDE_KEYS = ("holidays", "workdays")
# date.fromisoformat also takes "20261125" and "2026-W48-3"; the file format promises only YYYY-MM-DD.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PERIOD = re.compile(r"(\d{4})-(\d{2})")
_TOML_LINE = re.compile(r"at line (\d+)")
# A line that starts a new key or table, as opposed to the continuation of a multi-line array.
_NEXT_KEY = r"^\s*(\[|[A-Za-z_][\w-]*\s*[=.]|[\"'][^\"']*[\"']\s*[=.])"
# Readings arrive within days of each other, so a few thousand (date, n) pairs cover years of traffic.
_DUE_CACHE_SIZE = 4096


class CalendarOverrideError(ValueError):
    """A calendar override file that cannot be read or is malformed."""

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        """Build the error from the file, the 1-based line (None if unknown) and the reason."""
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        super().__init__(f"calendar override file {where}: {reason}")


class WorkCalendar:
    """Russian production calendar with branch overrides, in the retailer's time zone."""

    timezone: ZoneInfo

    def __init__(self, timezone: str = "Europe/Moscow", override_file: str | Path | None = None) -> None:
        """Create a calendar for `timezone`, applying `override_file` (TOML) if given."""
        try:
            self.timezone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {timezone!r}") from exc
        self._extra_holidays: frozenset[date] = frozenset()
        self._extra_workdays: frozenset[date] = frozenset()
        self._override_file = override_file
        self._zones: dict[str, WorkCalendar] = {}  # see in_zone
        if override_file is not None:
            self._extra_holidays, self._extra_workdays = _read_override_file(Path(override_file))
        self._federal_days_off: set[date] = set()
        self._federal_weekend_workdays: set[date] = set()
        self._loaded_years: set[int] = set()
        # One calendar may be shared by threads; two of them must not load the same year at once.
        self._load_lock = threading.Lock()
        # Per instance so that each override file gets its own cache and the instance can be freed.
        self._due_utc: Callable[[date, int], datetime] = lru_cache(maxsize=_DUE_CACHE_SIZE)(
            self._compute_due_utc
        )

    def __reduce__(self) -> tuple[type[WorkCalendar], tuple[str, str | Path | None]]:
        # Sent to the intake writer process: made there again from its zone and override file.
        return WorkCalendar, (self.timezone.key, self._override_file)

    def preload(self, *years: int) -> None:
        """Load these federal years now (tens of ms each) rather than inside the first decision."""
        for year in years:
            self._ensure_year(year)

    def is_working_day(self, day: date) -> bool:
        """Return True if `day` is a working day (override file first, then the federal calendar)."""
        day = _plain_date(day)
        if day in self._extra_workdays:
            return True
        if day in self._extra_holidays:
            return False
        self._ensure_year(day.year)
        if day.weekday() >= 5:
            return day in self._federal_weekend_workdays
        return day not in self._federal_days_off

    def is_public_holiday(self, day: date) -> bool:
        """Return True for a public holiday or transferred day off, False for an ordinary weekend or workday."""
        day = _plain_date(day)
        if day in self._extra_holidays:
            return True
        self._ensure_year(day.year)
        return day in self._federal_days_off

    def add_working_days(self, day: date, n: int) -> date:
        """Return the n-th working day strictly after `day` (n >= 1)."""
        day = _plain_date(day)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        remaining = n
        current = day
        while remaining:
            current += timedelta(days=1)
            if self.is_working_day(current):
                remaining -= 1
        return current

    def local_date(self, moment: datetime) -> date:
        """Return the date of the aware `moment` in the retailer's time zone."""
        return self.local_datetime(moment).date()

    def local_datetime(self, moment: datetime) -> datetime:
        """Return the aware `moment` converted to the retailer's time zone."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            # A naive timestamp could be UTC or local depending on the channel; guessing shifts deadlines.
            raise ValueError(f"moment must be timezone-aware, got naive {moment.isoformat()}")
        return moment.astimezone(self.timezone)

    def due_at(self, received_at: datetime, working_days: int = 1) -> datetime:
        """Return, in UTC, the local midnight ending the n-th working day after the local date of receipt."""
        return self._due_utc(self.local_date(received_at), working_days)

    def in_zone(self, zone: str | None) -> WorkCalendar:
        """This calendar (same holiday overrides) in `zone`, e.g. an account's own; itself for None
        or its own zone. Made once per zone and kept."""
        if not zone or zone == str(self.timezone):
            return self
        found = self._zones.get(zone)
        if found is None:
            found = self._zones[zone] = WorkCalendar(zone, self._override_file)
        return found

    def quiet_hours_ok(self, moment: datetime, start_hour: int = 10, end_hour: int = 21) -> bool:
        """Return True if local time is in [start_hour:00, end_hour:00) and the local day is no public holiday."""
        if not 0 <= start_hour < end_hour <= 24:
            raise ValueError(f"need 0 <= start_hour < end_hour <= 24, got {start_hour}, {end_hour}")
        local = self.local_datetime(moment)
        return start_hour <= local.hour < end_hour and not self.is_public_holiday(local.date())

    def _compute_due_utc(self, received_on: date, working_days: int) -> datetime:
        """Return, in UTC, the local midnight closing the `working_days`-th working day after `received_on`."""
        last_day = self.add_working_days(received_on, working_days)
        # For a midnight skipped by a DST jump, fold=0 resolves to the instant the next day really starts.
        return datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=self.timezone).astimezone(UTC)

    def _ensure_year(self, year: int) -> None:
        """Load the federal calendar for `year` unless it is already loaded."""
        if year in self._loaded_years:
            return
        with self._load_lock:
            if year in self._loaded_years:
                return
            # A decree may move a day off across New Year, and holidays.RU records the working
            # weekend day only while populating the decree's year, so the neighbours are loaded too.
            federal = holidays.country_holidays("RU", years=(year - 1, year, year + 1))
            self._federal_days_off.update(d for d in federal if d.year == year)
            self._federal_weekend_workdays.update(d for d in federal.weekend_workdays if d.year == year)
            self._loaded_years.add(year)


def billing_period(local_day: date, window_start_day: int = 15, cutoff_day: int = 26) -> str:
    """Return the "YYYY-MM" billing month that a reading taken on `local_day` counts for."""
    _check_window(window_start_day, cutoff_day)
    if local_day.day < cutoff_day:
        return f"{local_day.year:04d}-{local_day.month:02d}"
    if local_day.month == 12:
        return f"{local_day.year + 1:04d}-01"
    return f"{local_day.year:04d}-{local_day.month + 1:02d}"


def window_days(window_start_day: int = 15, cutoff_day: int = 26) -> tuple[int, int]:
    """Return the first and last day of the month (inclusive) of every period's acceptance window:
    readings from the cut-off day on count for the next period."""
    _check_window(window_start_day, cutoff_day)
    return window_start_day, cutoff_day - 1


def period_window(period: str, window_start_day: int = 15, cutoff_day: int = 26) -> tuple[date, date]:
    """Return the first and last day (inclusive) of the reading acceptance window of `period`."""
    first, last = window_days(window_start_day, cutoff_day)
    match = _PERIOD.fullmatch(period)
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"period must look like 'YYYY-MM', got {period!r}")
    year, month = int(match.group(1)), int(match.group(2))
    return date(year, month, first), date(year, month, last)


def _check_window(window_start_day: int, cutoff_day: int) -> None:
    """Raise ValueError unless 1 <= window_start_day < cutoff_day <= 28."""
    # 28 keeps the cut-off present in every month, February included.
    if not 1 <= window_start_day < cutoff_day <= 28:
        raise ValueError(
            f"need 1 <= window_start_day < cutoff_day <= 28, got {window_start_day}, {cutoff_day}"
        )


def _plain_date(day: date) -> date:
    """Return `day`, refusing datetimes, which never compare equal to dates in the calendar sets."""
    if isinstance(day, datetime):
        raise TypeError("expected a date, got a datetime; convert it with local_date() first")
    return day


def _read_override_file(path: Path) -> tuple[frozenset[date], frozenset[date]]:
    """Parse and validate an override file, returning (extra holidays, extra workdays)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise CalendarOverrideError(path, None, f"cannot read file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CalendarOverrideError(path, None, "file is not valid UTF-8") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's TOMLDecodeError has no lineno attribute; the line is only in the message.
        found = _TOML_LINE.search(str(exc))
        if found:
            line: int | None = int(found.group(1))
        elif "end of document" in str(exc):
            line = max(1, len(text.splitlines()))
        else:
            line = None
        raise CalendarOverrideError(path, line, f"not valid TOML: {exc}") from exc

    # tomllib reports no positions, so line numbers below are found again in the text.
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    for key in data:
        if key not in _OVERRIDE_KEYS:
            raise CalendarOverrideError(
                path,
                _find_line(lines, _key_pattern(key)),
                f"unknown key {key!r} (allowed: {', '.join(_OVERRIDE_KEYS)})",
            )

    parsed: dict[str, dict[date, int | None]] = {}
    for key in _OVERRIDE_KEYS:
        parsed[key] = {}
        if key not in data:
            continue
        start = _find_line(lines, _key_pattern(key))
        # A multi-line array ends where the next key starts.
        stop = _find_line(lines, _NEXT_KEY, start=start + 1) if start is not None else None
        values = data[key]
        if not isinstance(values, list):
            raise CalendarOverrideError(path, start, f"{key!r} must be an array of dates")
        for value in values:
            day = _parse_override_date(path, key, value, lines, start, stop)
            parsed[key].setdefault(day, _find_date_line(lines, day, start, stop))

    both = sorted(parsed["holidays"].keys() & parsed["workdays"].keys())
    if both:
        day = both[0]
        # The later listing is the one that conflicts with what came before.
        line = max(filter(None, (parsed["holidays"][day], parsed["workdays"][day])), default=None)
        raise CalendarOverrideError(
            path, line, f"{day.isoformat()} is listed under both 'holidays' and 'workdays'"
        )
    return frozenset(parsed["holidays"]), frozenset(parsed["workdays"])


def _parse_override_date(
    path: Path, key: str, value: Any, lines: list[str], start: int | None, stop: int | None
) -> date:
    """Return one entry of the `key` array as a date, or raise CalendarOverrideError."""
    if isinstance(value, str):
        line = (
            _find_line(lines, re.escape(f'"{value}"') + "|" + re.escape(f"'{value}'"), start, stop) or start
        )
        if not _ISO_DATE.fullmatch(value):
            raise CalendarOverrideError(path, line, f"bad date {value!r} in {key!r}: expected 'YYYY-MM-DD'")
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise CalendarOverrideError(path, line, f"bad date {value!r} in {key!r}: {exc}") from exc
    # A TOML local date arrives as a date; a datetime carries a time of day the file cannot mean.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise CalendarOverrideError(path, start, f"bad entry {value!r} in {key!r}: expected 'YYYY-MM-DD'")


def _find_date_line(lines: list[str], day: date, start: int | None, stop: int | None) -> int | None:
    """Return the line, within [start, stop), on which `day` is written, else `start`."""
    return _find_line(lines, re.escape(day.isoformat()), start, stop) or start


def _key_pattern(key: str) -> str:
    """Return a regex for a line that defines `key`: `key = ...`, `key.sub = ...` or `[key]`."""
    return rf"^\s*(\[+\s*)?[\"']?{re.escape(key)}[\"']?\s*[=.\]]"


def _find_line(lines: list[str], pattern: str, start: int | None = 1, stop: int | None = None) -> int | None:
    """Return the 1-based number of the first line in [start, stop) matching `pattern`, or None."""
    regex = re.compile(pattern)
    first = start or 1
    last = stop if stop is not None else len(lines) + 1
    for number in range(first, last):
        if regex.search(lines[number - 1]):
            return number
    return None
