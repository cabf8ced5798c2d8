"""What billing receives from a bus's polled meters (`[[modbus.buses]] billing`), and which of the
other polls are kept as interval data (`intervals_minutes`).

- `every_poll` (the default): every poll is a reading for billing, nothing is kept beside it.
- `daily`: one reading per meter a day: the first poll at or after `billing_time` (local time of
  the account's branch), or the first after it when the meter was not answering then.
- `period`: one reading per meter per billing period: the first poll at or after `billing_time`
  on the day the period's acceptance window opens (`window_start_day` of the account's branch),
  or the first after it while the period lasts. The period and its window are the core's
  (gateway/branches.py), so a polled reading counts for the period billing expects it in.

With `daily` and `period` the polls billing is not sent are kept as interval data (table
`meter_intervals`, adapters/meters/intervals.py), at most one per meter per `intervals_minutes`
on the clock (the first poll of each 30 minutes: :00 and :30); the readings sent to billing are
kept there too, marked `billed`, so that after a restart the worker knows a meter's day or period
is already billed (`restore`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from adapters.meters import intervals


@dataclass
class BillingSelection:
    """One bus's choice of polls: which go to billing, which are kept as interval data."""

    mode: str  # every_poll | daily | period
    billing_time: time
    intervals_minutes: int
    branches: Any  # gateway.branches.Branches: each account's branch's zone and window
    billed_at: dict[str, datetime] = field(default_factory=dict)  # serial -> last reading sent to billing
    kept_at: dict[str, datetime] = field(default_factory=dict)  # serial -> last interval point kept

    @property
    def keeps_intervals(self) -> bool:
        return self.mode != "every_poll"

    async def restore(self, engine: Any, serials: Sequence[str]) -> None:
        """What earlier runs sent to billing and kept (the `billed` and other interval points)."""
        if not self.keeps_intervals or not serials:
            return
        self.billed_at.update(await intervals.last_register_at(engine, serials, billed=True))
        self.kept_at.update(await intervals.last_register_at(engine, serials, billed=False))

    def to_billing(self, serial: str, at: datetime, branch_id: str | None) -> bool:
        """Does the poll of this meter read at `at` go to billing?"""
        if self.mode == "every_poll":
            return True
        branch = self.branches.of(branch_id)
        last = self.billed_at.get(serial)
        if self.mode == "daily":
            opens = self._latest_boundary(at, branch.calendar.timezone)
        else:
            start, _ = branch.window(branch.period_of(at))
            opens = _local(start, self.billing_time, branch.calendar.timezone)
            if at < opens:
                return False  # counted for a period whose window has not opened yet
        return last is None or last < opens

    def keep_interval(self, serial: str, at: datetime) -> bool:
        """Is this poll (not sent to billing) kept as an interval point?"""
        if not self.keeps_intervals or self.intervals_minutes == 0:
            return False
        last = self.kept_at.get(serial)
        return last is None or self._slot(at) > self._slot(last)

    def billed(self, serial: str, at: datetime) -> None:
        self.billed_at[serial] = at
        self.kept_at[serial] = max(at, self.kept_at.get(serial, at))

    def kept(self, serial: str, at: datetime) -> None:
        self.kept_at[serial] = at

    def _slot(self, at: datetime) -> int:
        return int(at.timestamp() // (self.intervals_minutes * 60))

    def _latest_boundary(self, at: datetime, tz: ZoneInfo) -> datetime:
        """The last local `billing_time` at or before `at`."""
        local_day = at.astimezone(tz).date()
        boundary = _local(local_day, self.billing_time, tz)
        return boundary if boundary <= at else _local(local_day - timedelta(days=1), self.billing_time, tz)


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=tz)
