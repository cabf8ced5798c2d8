"""Judging one submission: parse its values, apply every rule, combine reasons into a status."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation

from gateway import ratios
from gateway.config import RuleThresholds
from gateway.model import STATUS_BY_SEVERITY, Reason, RuleGroup, Severity, Status
from gateway.validation import rules
from gateway.validation.context import Candidate, MeterInfo, ZoneState
from gateway.validation.explain import LOCAL_ZONE, reason

_VALUE = re.compile(r"^\d{1,15}([.,]\d{1,3})?$")
_SPACES = re.compile(r"[\s\u00a0\u202f]")  # digit groups as typed or pasted: "12 345", "12\u00a0345"
MAX_DECIMALS = 3
ZONE_NAMES_RU = {"T": "общую", "T1": "Т1 (день)", "T2": "Т2 (ночь)", "T3": "Т3"}


@dataclass(slots=True)
class Evaluation:
    """The outcome for one submission, before it is stored."""

    status: Status
    reasons: list[Reason]
    values: dict[str, Decimal] = field(default_factory=dict)  # billed: the registers times the ratio
    # A meter behind transformers: the registers as sent (empty for a meter without a ratio)
    raw_values: dict[str, Decimal] = field(default_factory=dict)
    consumption: dict[str, Decimal | None] = field(default_factory=dict)
    duplicate: bool = False
    duplicate_of: int | None = None  # receipt of the identical reading already accepted
    duplicate_owner: object | None = None  # ...or the earlier submission of the same group


def parse_value(raw: object) -> Decimal | None:
    """A meter value as given ('12345', '12345,6', 12345.6, Decimal) -> Decimal, or None if it is not one."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        raw = str(raw)
    elif isinstance(raw, float):
        raw = repr(raw)
    elif isinstance(raw, Decimal):  # a polled meter's register, already exact
        raw = format(raw, "f")
    if not isinstance(raw, str):
        return None
    text = _SPACES.sub("", raw)
    if not _VALUE.match(text):
        return None
    try:
        return Decimal(text.replace(",", "."))
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        return None


def _worst(reasons: list[Reason]) -> Status:
    severity = max((r.severity for r in reasons), default=Severity.INFO)
    return STATUS_BY_SEVERITY[severity]


def _rejected(*found: Reason) -> Evaluation:
    return Evaluation(Status.REJECTED, list(found))


def zone_values(
    meter: MeterInfo, values: Mapping[str, object], positional: Sequence[str]
) -> dict[str, object]:
    """Labelled values as given, or unlabelled ones laid onto the meter's zones in order."""
    if not positional:
        return dict(values)
    return dict(zip(meter.zones, positional, strict=True))


def _count_mismatch(meter: MeterInfo, given: int) -> Reason:
    names = ", ".join(ZONE_NAMES_RU.get(z, z) for z in meter.zones)
    if len(meter.zones) == 1:
        ru = f"Счётчик однотарифный: нужно одно показание, а не {given}"
    else:
        ru = f"Нужно {len(meter.zones)} показания: {names}"
    return reason(
        "zones_mismatch",
        Severity.REJECT,
        ru,
        f"meter {meter.serial} has {len(meter.zones)} zone(s) ({', '.join(meter.zones)}); {given} values given",
    )


def check_values(meter: MeterInfo, values: Mapping[str, object]) -> tuple[dict[str, Decimal], list[Reason]]:
    """Values must be numbers, for exactly the meter's zones."""
    found: list[Reason] = []
    parsed: dict[str, Decimal] = {}
    if not values:
        return parsed, [
            reason("no_values", Severity.REJECT, "Нет показаний в сообщении", "the message carries no values")
        ]
    for zone, raw in values.items():
        value = parse_value(raw)
        if value is None:
            found.append(
                reason(
                    "bad_value",
                    Severity.REJECT,
                    f"«{str(raw)[:12]}» не число. Пример: 12345 или 12345,6",
                    f"{str(raw)[:20]!r} is not a meter value; send digits like 12345 or 12345.6",
                    zone if zone in meter.zones else None,
                )
            )
        else:
            parsed[zone] = value
    unknown = [z for z in values if z not in meter.zones]
    if unknown:
        found.append(
            reason(
                "unknown_zone",
                Severity.REJECT,
                f"У счётчика нет зоны {', '.join(unknown)}; зоны: {', '.join(meter.zones)}",
                f"meter {meter.serial} has no zone {', '.join(unknown)}; its zones are {', '.join(meter.zones)}",
            )
        )
    missing = [z for z in meter.zones if z not in values]
    if missing and not unknown:
        names = ", ".join(ZONE_NAMES_RU.get(z, z) for z in missing)
        found.append(
            reason(
                "zones_mismatch",
                Severity.REJECT,
                f"Нужны показания всех зон, нет: {names}",
                f"meter {meter.serial} has zones {', '.join(meter.zones)}; missing {', '.join(missing)}",
            )
        )
    return parsed, found


def evaluate(
    *,
    meter: MeterInfo,
    values: Mapping[str, object],
    positional: Sequence[str] = (),
    taken_at: datetime,
    now: datetime,
    period: str,
    period_note: Reason | None,
    group: RuleGroup,
    limits: RuleThresholds,
    states: Mapping[str, ZoneState],
    tz: tzinfo | None = None,
    control: bool = False,
) -> Evaluation:
    """Apply every rule to one submission for a resolved meter.

    `tz` is the retailer's zone (configuration `calendar.timezone`): the days named in the
    explanations are local days. Without it, Moscow. `control`: the submission is an
    inspector's control reading (not compared with the control readings before it).
    """
    if not meter.active:
        return _rejected(
            reason(
                "inactive_meter",
                Severity.REJECT,
                f"Счётчик {meter.serial[:16]} снят с учёта. Позвоните нам",
                f"meter {meter.serial} is no longer active on account {meter.account}",
            )
        )
    if positional and len(positional) != len(meter.zones):
        return _rejected(_count_mismatch(meter, len(positional)))
    registers, found = check_values(meter, zone_values(meter, values, positional))
    # The billed values (gateway/ratios.py): every rule below judges energy as billing sees it,
    # only the count of digits is the register's own.
    parsed = {z: ratios.billed(v, meter.ratio) for z, v in registers.items()}
    raws = registers if meter.ratio is not None else {}
    if found:
        return Evaluation(Status.REJECTED, found, parsed, raws)

    candidates = [
        Candidate(
            zone,
            parsed[zone],
            taken_at,
            period,
            group,
            meter,
            states.get(zone) or ZoneState(),
            limits,
            tz or LOCAL_ZONE,
            raws.get(zone),
            control,
        )
        for zone in meter.zones
    ]
    first = candidates[0]
    found = [r for rule in rules.TIME_RULES if (r := rule(first, now)) is not None]
    if found:
        return Evaluation(Status.REJECTED, found, parsed, raws)

    if _is_duplicate(candidates):
        s = candidates[0].state
        return Evaluation(
            Status.ACCEPTED,
            [],
            parsed,
            raws,
            duplicate=True,
            duplicate_of=s.last_receipt,
            duplicate_owner=s.last_owner,
        )

    for cand in candidates:
        for rule in rules.ZONE_RULES:
            r = rule(cand)
            if r is not None:
                found.append(r)
                if r.severity is Severity.REJECT:
                    # A value already refused is not judged further: a reading dated before the
                    # last one is not also "lower", a mistyped one not also "too much".
                    break
    status = _worst(found)
    if status is not Status.REJECTED and period_note is not None:
        found.append(period_note)
    return Evaluation(
        status,
        found,
        parsed,
        raws,
        consumption={c.zone: rules.consumption(c) for c in candidates},
    )


def _is_duplicate(candidates: list[Candidate]) -> bool:
    """An exact repeat of the last accepted reading: the same values for the same moment.

    Residents repeat a message when unsure it arrived: the same values within the same period
    count once. A device repeats the very same sample (same time stamp) after a lost reply.
    """
    first = candidates[0].state
    for c in candidates:
        s = c.state
        if s.last_value is None or s.last_value != c.value:
            return False
        if (s.last_receipt, s.last_owner) != (first.last_receipt, first.last_owner):
            return False  # zones last set by different messages
        same_moment = s.last_taken_at == c.taken_at
        # A resident repeating a device's value is a reading of their own, not a repeat.
        last_by_resident = s.res_taken_at is not None and s.res_taken_at == s.last_taken_at
        same_period = s.last_period == c.period and c.group is not RuleGroup.DEVICES and last_by_resident
        if not (same_moment or same_period):
            return False
    return True
