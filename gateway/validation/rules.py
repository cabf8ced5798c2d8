"""The plausibility rules, each small and named, each returning a reason or nothing.

A zone rule takes a `Candidate` (the value, its meter, its zone's history and the thresholds of
the sender's channel group) and returns `None` or a `Reason` whose stable `code` is what
operators, metrics and tests key on. The order of `ZONE_RULES` is the order reasons are shown.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from gateway.model import Reason, RuleGroup, Severity
from gateway.validation.context import SECONDS_PER_DAY, Candidate
from gateway.validation.explain import day_en, day_ru, num, reason

ZoneRule = Callable[[Candidate], Reason | None]

SEVERITY_BY_NAME = {"confirm": Severity.CONFIRM, "flag": Severity.FLAG, "info": Severity.INFO}


def integer_digits(value: Decimal) -> int:
    """Digits before the decimal point ('0.5' has none that count)."""
    whole = abs(value).to_integral_value(rounding="ROUND_FLOOR")
    return len(str(whole)) if whole > 0 else 0


def too_many_digits(c: Candidate) -> Reason | None:
    if integer_digits(c.register) <= c.meter.digits:
        return None
    return reason(
        "too_many_digits",
        Severity.REJECT,
        f"{num(c.register)}: у счётчика {c.meter.digits} цифр до запятой. Проверьте",
        f"{num(c.register)} has more integer digits than the meter's {c.meter.digits}; check the number",
        c.zone,
    )


def future_dated(c: Candidate, now: datetime) -> Reason | None:
    if c.taken_at <= now + timedelta(seconds=c.limits.clock_skew_seconds):
        return None
    return reason(
        "future_reading",
        Severity.REJECT,
        "Дата показаний в будущем. Проверьте часы устройства",
        f"reading dated {c.taken_at.isoformat()} is in the future",
        None,
    )


def too_old(c: Candidate, now: datetime) -> Reason | None:
    if c.taken_at >= now - timedelta(days=c.limits.max_age_days):
        return None
    return reason(
        "too_old",
        Severity.REJECT,
        f"Показания старше {c.limits.max_age_days} дн. не принимаются",
        f"reading taken {day_en(c.taken_at, c.tz)} is older than {c.limits.max_age_days} days",
        None,
    )


def before_previous(c: Candidate) -> Reason | None:
    """A reading older than the last accepted one cannot extend the history; tell the sender."""
    last_at = c.state.last_taken_at
    if last_at is None or c.taken_at >= last_at:
        return None
    return reason(
        "before_previous",
        Severity.REJECT,
        f"Есть более поздние показания от {day_ru(last_at, c.tz)}",
        f"a later reading of {day_en(last_at, c.tz)} is already stored",
        c.zone,
    )


def lower_than_previous(c: Candidate) -> Reason | None:
    """A drop is a rollover when the wrapped consumption is physically possible, else an error."""
    last = c.state.last_value
    if last is None or c.value >= last or c.state.last_taken_at is None:
        return None
    hours = c.hours_since_last() or Decimal(0)
    wrapped = c.rollover_consumption()
    if wrapped is not None and wrapped <= c.possible_kwh(hours):
        return reason(
            "rollover",
            Severity.INFO,
            f"счётчик перешёл через ноль, расход {num(wrapped)} кВт·ч",
            f"counter rolled over; consumption {num(wrapped)} kWh",
            c.zone,
        )
    return reason(
        "lower_than_previous",
        Severity.REJECT,
        f"{num(c.value)} меньше прежних {num(last)} от {day_ru(c.state.last_taken_at, c.tz)}. Проверьте",
        f"{num(c.value)} is lower than the previous {num(last)} of {day_en(c.state.last_taken_at, c.tz)}; "
        "check the digits and send again",
        c.zone,
    )


def consumption(c: Candidate) -> Decimal | None:
    """kWh since the last accepted reading, counting a plausible rollover."""
    last = c.state.last_value
    if last is None:
        return None
    if c.value >= last:
        return c.value - last
    return c.rollover_consumption()


def impossible_consumption(c: Candidate) -> Reason | None:
    last = c.state.last_value
    hours = c.hours_since_last()
    if last is None or hours is None or c.value < last:
        return None  # drops are judged by lower_than_previous
    used = c.value - last
    limit = c.possible_kwh(hours)
    if used <= limit:
        return None
    # Hours come from a float of seconds: show the limit to 0.1 kWh, rounded down so that it is
    # never shown as more than it is (and never as 28 digits in an SMS).
    shown = num(limit.quantize(Decimal("0.1"), rounding=ROUND_FLOOR))
    return reason(
        "impossible_consumption",
        Severity.REJECT,
        f"расход {num(used)} кВт·ч больше возможного {shown}. Проверьте",
        f"consumption of {num(used)} kWh exceeds the {shown} kWh possible at "
        f"{num(c.max_power_kw)} kW in {num(hours.quantize(Decimal('0.1')))} h",
        c.zone,
    )


def band_for(c: Candidate, expected: Decimal) -> tuple[int, int]:
    """The allowed deviation (+%, -%) for an expected consumption: wider for small amounts."""
    for upper, plus, minus in c.limits.bands:
        if expected < upper:
            return plus, minus
    _, plus, minus = c.limits.bands[-1]
    return plus, minus


def expected_band(c: Candidate) -> tuple[Decimal, Decimal, Decimal] | None:
    """The consumption expected from the last accepted reading to `c.taken_at`, as `(low,
    high, days)`: kWh by this meter's own history and `band_for`, over that many days. None
    where the band does not apply: no history, less than `band_min_history_days` of it, less
    than `band_min_days` since the last reading, or no bands configured."""
    last_at = c.state.last_taken_at
    if c.state.total_days <= 0 or last_at is None or not c.limits.bands:
        return None
    if c.state.total_days < c.limits.band_min_history_days:
        return None
    days = Decimal((c.taken_at - last_at).total_seconds()) / SECONDS_PER_DAY
    if days < c.limits.band_min_days:
        return None
    # total * days / total_days, not avg * days: 100 kWh over 30 days for 30 days is 100, not
    # 99.99...9 (which would fall into the wider band below 100).
    expected = c.state.total_kwh * days / c.state.total_days
    plus, minus = band_for(c, expected)
    return expected * (100 - minus) / 100, expected * (100 + plus) / 100, days


def unexpected_consumption(c: Candidate) -> Reason | None:
    """Consumption far outside what this meter's own history leads one to expect."""
    used = consumption(c)
    band = expected_band(c) if used is not None else None
    if band is None or used is None:
        return None
    low, high, days = band
    if low <= used <= high:
        return None
    severity = SEVERITY_BY_NAME[c.limits.band_severity]
    lo, hi = num(low.quantize(Decimal(1))), num(high.quantize(Decimal(1)))
    ask = "Подтвердите или исправьте" if severity is Severity.CONFIRM else "Проверим"
    return reason(
        "unexpected_consumption",
        severity,
        f"расход {num(used)} кВт·ч, обычно {lo}-{hi}. {ask}",
        f"consumption of {num(used)} kWh is outside the expected {lo}-{hi} kWh for {num(days.quantize(Decimal(1)))} days",
        c.zone,
    )


def source_mismatch(c: Candidate) -> Reason | None:
    """A resident's value and a device's for the same period must tell the same story."""
    if c.group is RuleGroup.DEVICES:
        other_value, other_at = c.state.res_value, c.state.res_taken_at
    else:
        other_value, other_at = c.state.dev_value, c.state.dev_taken_at
    if other_value is None or other_at is None:
        return None
    days = abs(Decimal((c.taken_at - other_at).total_seconds())) / SECONDS_PER_DAY
    if days > 31:
        return None  # too far apart to compare
    avg = c.state.daily_average() or Decimal(10)
    allowed = c.limits.cross_check_tolerance_kwh + avg * days * Decimal("1.5")
    diff = abs(c.value - other_value)
    if diff <= allowed:
        return None
    who = "счётчика" if c.group is not RuleGroup.DEVICES else "абонента"
    return reason(
        "source_mismatch",
        SEVERITY_BY_NAME[c.limits.cross_check_severity],
        f"расходится с данными {who} ({num(other_value)} от {day_ru(other_at, c.tz)})",
        f"differs by {num(diff)} kWh from the {'device' if c.group is not RuleGroup.DEVICES else 'resident'} "
        f"reading {num(other_value)} of {day_en(other_at, c.tz)}",
        c.zone,
    )


def control_mismatch(c: Candidate) -> Reason | None:
    """A reading must agree with the meter's latest control reading (an inspector's, trusted):
    no lower than it once taken after it, no higher than it plus the meter's usual use in between
    (x1.5), within `control_tolerance_kwh`; else it is held for the back office with both values."""
    tolerance = c.limits.control_tolerance_kwh
    control, at = c.state.ctl_value, c.state.ctl_taken_at
    if c.control or tolerance is None or control is None or at is None:
        return None
    days = Decimal((c.taken_at - at).total_seconds()) / SECONDS_PER_DAY
    slack = (c.state.daily_average() or Decimal(10)) * abs(days) * Decimal("1.5")
    if days >= 0:
        low, high = control - tolerance, control + slack + tolerance
    else:  # taken before the inspector's visit
        low, high = control - slack - tolerance, control + tolerance
    if low <= c.value <= high:
        return None
    return reason(
        "control_mismatch",
        Severity.FLAG,
        f"расходится с контрольным показанием {num(control)} от {day_ru(at, c.tz)}. Проверим",
        f"{num(c.value)} differs from the control reading {num(control)} of {day_en(at, c.tz)} "
        f"(expected {num(low.quantize(Decimal(1)))}-{num(high.quantize(Decimal(1)))})",
        c.zone,
    )


ZONE_RULES: tuple[ZoneRule, ...] = (
    too_many_digits,
    before_previous,
    lower_than_previous,
    impossible_consumption,
    unexpected_consumption,
    source_mismatch,
    control_mismatch,
)
TIME_RULES = (future_dated, too_old)
