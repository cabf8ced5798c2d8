"""What a rule sees: the meter from the registry, the zone's history, the candidate value."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal

from gateway.config import RuleThresholds
from gateway.model import RuleGroup
from gateway.validation.explain import LOCAL_ZONE

SECONDS_PER_DAY = Decimal(86400)


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """A meter as the registry describes it."""

    id: int
    account_id: int
    account: str
    serial: str
    zones: tuple[str, ...]
    digits: int
    max_power_kw: Decimal | None
    active: bool
    # ct x vt of a meter behind instrument transformers (gateway/ratios.py); None: none
    ratio: Decimal | None = None
    branch: str | None = None  # the account's branch (gateway/branches.py); None: the default


@dataclass(slots=True)
class ZoneState:
    """The last accepted reading of one meter zone and the totals that give its average use."""

    last_value: Decimal | None = None
    last_taken_at: datetime | None = None
    last_receipt: int | None = None
    last_period: str | None = None
    total_kwh: Decimal = Decimal(0)
    total_days: Decimal = Decimal(0)
    dev_value: Decimal | None = None
    dev_taken_at: datetime | None = None
    res_value: Decimal | None = None
    res_taken_at: datetime | None = None
    ctl_value: Decimal | None = None  # the latest accepted control reading (an inspector's)
    ctl_taken_at: datetime | None = None
    # While a group is being decided, the not-yet-stored submission that set last_value; its
    # receipt (inbound id) exists only after the insert. Never persisted.
    last_owner: object | None = None

    def daily_average(self) -> Decimal | None:
        """kWh per day over the accepted history, or None when there is none yet."""
        if self.total_days <= 0:
            return None
        return self.total_kwh / self.total_days


@dataclass(slots=True)  # not frozen: one is made per zone per reading, and frozen init is slow
class Candidate:
    """One zone value under judgement, with everything the rules need about it."""

    zone: str
    value: Decimal  # the billed value: the register times the meter's ratio
    taken_at: datetime
    period: str
    group: RuleGroup
    meter: MeterInfo
    state: ZoneState
    limits: RuleThresholds
    tz: tzinfo = LOCAL_ZONE  # the retailer's zone: dates in explanations are local days
    raw: Decimal | None = None  # the register as sent, when the meter has a ratio
    control: bool = False  # the value is itself a control reading (an inspector's)

    @property
    def register(self) -> Decimal:
        """The value as the meter's register shows it."""
        return self.value if self.raw is None else self.raw

    @property
    def max_power_kw(self) -> Decimal:
        return self.meter.max_power_kw or self.limits.default_max_power_kw

    def hours_since_last(self) -> Decimal | None:
        if self.state.last_taken_at is None:
            return None
        seconds = Decimal((self.taken_at - self.state.last_taken_at).total_seconds())
        return seconds / Decimal(3600)

    def rollover_consumption(self) -> Decimal | None:
        """Consumption if the counter wrapped past its digits since the last reading (a meter
        behind transformers wraps at its digits times its ratio: values here are billed ones)."""
        if self.state.last_value is None:
            return None
        return Decimal(10) ** self.meter.digits * (self.meter.ratio or 1) - self.state.last_value + self.value

    def possible_kwh(self, hours: Decimal) -> Decimal:
        return possible_kwh(self.max_power_kw, hours)


def possible_kwh(max_power_kw: Decimal, hours: Decimal) -> Decimal:
    """The most a meter can physically count in `hours` at its permitted power (a reading's
    consumption since the last one, a head-end file's energy of one period).

    One kWh of slack absorbs rounding of the displayed digits between close readings.
    """
    return max_power_kw * max(hours, Decimal(0)) + Decimal(1)


def advance_state(
    state: ZoneState,
    value: Decimal,
    taken_at: datetime,
    period: str,
    group: RuleGroup,
    used: Decimal | None,
    owner: object,
    control: bool = False,
) -> None:
    """Make `value` the zone's last reading and add its consumption to the running average;
    a `control` reading (an inspector's) is also what later readings are compared with."""
    if used is not None and state.last_taken_at is not None:
        state.total_kwh += used
        days = Decimal((taken_at - state.last_taken_at).total_seconds()) / SECONDS_PER_DAY
        # A millionth of a day (0.09 s) is plenty, and keeps the stored text short.
        state.total_days = (state.total_days + days).quantize(Decimal("0.000001"))
    state.last_value = value
    state.last_taken_at = taken_at
    state.last_period = period
    # The receipt (inbound id) is known only after the insert; until then the owner stands in.
    state.last_receipt = None
    state.last_owner = owner
    if control:
        state.ctl_value, state.ctl_taken_at = value, taken_at
    elif group is RuleGroup.DEVICES:
        state.dev_value, state.dev_taken_at = value, taken_at
    else:
        state.res_value, state.res_taken_at = value, taken_at
