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


# What a sender not verified for the account is told instead (gateway/senders.py): the same
# finding, in words that carry nothing of the account (no earlier values or dates, no meter
# digits, zones or serials). Codes whose texts hold only what the sender sent, or the calendar,
# are in SAFE_FOR_STRANGERS; any other code falls back to a word on its severity.
GENERIC: dict[str, tuple[str, str]] = {
    "too_many_digits": ("Слишком много цифр. Проверьте", "too many digits for the meter; check the number"),
    "before_previous": ("Есть более поздние показания", "a later reading is already stored"),
    "lower_than_previous": ("Меньше предыдущего показания. Проверьте", "lower than the previous reading"),
    "rollover": ("счётчик перешёл через ноль", "counter rolled over"),
    "impossible_consumption": ("Расход больше возможного. Проверьте", "consumption exceeds what is possible"),
    "unexpected_consumption": ("Необычный расход", "consumption outside the expected range"),
    "source_mismatch": ("Расходится с другими данными", "differs from other readings of the meter"),
    "control_mismatch": (
        "Расходится с данными проверки. Проверим",
        "differs from an inspector's control reading",
    ),
    "zones_mismatch": ("Число показаний не подходит к счётчику", "the values do not fit the meter's zones"),
    "unknown_zone": ("Зона не подходит к счётчику", "a zone given is not the meter's"),
    "inactive_meter": ("Счётчик не принимает показания. Позвоните нам", "the meter takes no readings"),
    "meter_ambiguous": ("Не удалось определить счётчик. Позвоните нам", "the meter cannot be told"),
    "no_meter": ("Не удалось определить счётчик. Позвоните нам", "the meter cannot be told"),
    "meter_not_on_account": ("Счётчик не найден на этом л/с", "the meter is not on this account"),
}
SAFE_FOR_STRANGERS = frozenset(
    {
        "bad_value",
        "no_values",
        "not_a_reading",
        "no_account",
        "unknown_account",
        "unknown_meter",
        "unknown_sender",
        "account_ambiguous",
        "future_reading",
        "too_old",
        "next_period",
        "confirmed",
        "released",
        "unverified_sender",
        "sender_rate_limited",
    }
)
_BY_SEVERITY = {
    Severity.REJECT: ("Показание не принято", "the reading is not accepted"),
    Severity.CONFIRM: ("Необычное показание", "the reading needs confirmation"),
    Severity.FLAG: ("Проверим", "held for review"),
    Severity.INFO: ("", ""),
}


def generic(found: Reason) -> Reason:
    """`found` as it may be told to a sender not verified for the account."""
    if found.code in SAFE_FOR_STRANGERS or found.code.startswith("format_"):
        return found
    ru, en = GENERIC.get(found.code) or _BY_SEVERITY[found.severity]
    if found.code == "unexpected_consumption":
        ru += ". Подтвердите или исправьте" if found.severity is Severity.CONFIRM else ". Проверим"
    return Reason(code=found.code, severity=found.severity, message_ru=ru, message_en=en, zone=found.zone)
