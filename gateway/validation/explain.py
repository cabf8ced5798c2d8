"""Building reasons: numbers and dates written the way residents read them.

Russian texts are short on purpose: a rejection must fit one Cyrillic SMS (70 characters)
wherever the numbers allow, because the SMS adapter sends them as they are.
"""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo

from gateway.model import Reason, Severity

ZONE_RU = {"T": "", "T1": "Т1", "T2": "Т2", "T3": "Т3"}
# Dates are told in the retailer's zone (a reading at 00:30 in Moscow is of that day, not of
# the UTC day before); callers that know the configured zone pass it.
LOCAL_ZONE = ZoneInfo("Europe/Moscow")
MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def num(value: Decimal) -> str:
    """12345.60 -> '12 345.6': digit groups of three, no trailing zeros, point as in the input."""
    q = value.normalize()
    if q == q.to_integral():
        q = q.quantize(Decimal(1))
    sign = "-" if q < 0 else ""
    text = format(abs(q), "f")
    whole, _, frac = text.partition(".")
    groups: list[str] = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    out = sign + " ".join(groups)
    return f"{out}.{frac}" if frac else out


def local_day(moment: date | datetime, tz: tzinfo | None = None) -> date:
    """The calendar day of `moment` in the retailer's zone (aware datetimes are converted)."""
    if isinstance(moment, datetime):
        if moment.tzinfo is not None:
            moment = moment.astimezone(tz or LOCAL_ZONE)
        return moment.date()
    return moment


def day_ru(moment: date | datetime, tz: tzinfo | None = None) -> str:
    """'24.05': the local day a reading was taken."""
    day = local_day(moment, tz)
    return f"{day.day:02d}.{day.month:02d}"


def day_en(moment: date | datetime, tz: tzinfo | None = None) -> str:
    """'24 May', whatever the process locale."""
    day = local_day(moment, tz)
    return f"{day.day} {MONTHS_EN[day.month - 1]}"


def zone_prefix(zone: str | None) -> str:
    """'Т1: ' for a multi-zone reading, '' for a single-rate meter."""
    label = ZONE_RU.get(zone or "T", zone or "")
    return f"{label}: " if label else ""


def reason(code: str, severity: Severity, ru: str, en: str, zone: str | None = None) -> Reason:
    """A reason whose Russian text carries the zone it is about."""
    return Reason(code=code, severity=severity, message_ru=zone_prefix(zone) + ru, message_en=en, zone=zone)


MONTHS_RU = [
    "январь", "февраль", "март", "апрель", "май", "июнь",
    "июль", "август", "сентябрь", "октябрь", "ноябрь", "декабрь",
]  # fmt: skip
MONTHS_RU_PREP = [
    "январе", "феврале", "марте", "апреле", "мае", "июне",
    "июле", "августе", "сентябре", "октябре", "ноябре", "декабре",
]  # fmt: skip


def period_ru(period: str, prepositional: bool = False) -> str:
    """'2026-12' -> 'декабрь' (or 'декабре' after 'в')."""
    month = int(period[5:7])
    return (MONTHS_RU_PREP if prepositional else MONTHS_RU)[month - 1]
