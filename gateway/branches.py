"""Branches: the parts of one retailer that each approve their own reading dates.

An account belongs to a branch (the registry's `branch` column). Each branch has its own
acceptance window (`window_start_day`, `cutoff_day`), production-calendar overrides (a region's
own holidays), time zone and the contacts its reminders name. The accounts without a branch
are the default branch, configured by `[calendar]`; the others are `[branches.<id>]` tables,
each key left out taken from `[calendar]` (gateway/config.py).

Every rule that depends on the date of an account's reading asks the account's `Branch`: the
period a reading counts for, its due time, when a period closes, which reminder is due and the
hours a notice may go (gateway/decide.py, gateway/held_lifecycle.py, gateway/reminders.py,
gateway/held_job.py). The arithmetic stays gateway/calendar.py's, written once; a branch only
holds its own numbers and calendar. An account whose branch is no longer configured (a branch
removed from the configuration after an import) follows the default branch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import or_

from gateway.calendar import WorkCalendar, billing_period, period_window, window_days
from gateway.config import DEFAULT_BRANCH, Config
from gateway.store.schema import accounts

DEFAULT_NAME = "основной"  # the default branch's name where staff see it


@dataclass(frozen=True, eq=False, slots=True)
class Branch:
    """One branch's dates: its calendar (zone and holidays), window and contacts."""

    id: str
    name: str
    calendar: WorkCalendar
    window_start_day: int
    cutoff_day: int
    contacts: str  # where its residents ask questions; added to its reminders ("" : nothing)

    def period_of(self, moment: datetime) -> str:
        """The billing period ("YYYY-MM") a reading taken at `moment` counts for."""
        return billing_period(self.calendar.local_date(moment), self.window_start_day, self.cutoff_day)

    def counts_for_next(self, moment: datetime) -> bool:
        """Taken on or after the cut-off day: it counts for the next month (the sender is told)."""
        return self.calendar.local_date(moment).day >= self.cutoff_day

    def last_window_day(self) -> int:
        """The last day of the month readings of the month are taken."""
        return window_days(self.window_start_day, self.cutoff_day)[1]

    def window(self, period: str) -> tuple[date, date]:
        """The first and last day (inclusive) of the acceptance window of `period`."""
        return period_window(period, self.window_start_day, self.cutoff_day)

    def closes(self, period: str) -> datetime:
        """The moment (UTC) the period's acceptance closes: local midnight starting the cut-off day."""
        _, last = self.window(period)
        tz = self.calendar.timezone
        return datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)

    def due_at(self, received_at: datetime, working_days: int) -> datetime:
        """When a reading received at `received_at` is due to billing (UTC)."""
        return self.calendar.due_at(received_at, working_days)

    def notice_calendar(self, zone: str | None) -> WorkCalendar:
        """The calendar a notice to a resident keeps to: the branch's holidays in the resident's own
        zone (the registry's `timezone`), else the branch's zone."""
        return self.calendar.in_zone(zone)


class Branches:
    """Every branch of this gateway's configuration, by id; `of` finds an account's."""

    def __init__(self, config: Config, default_calendar: WorkCalendar | None = None) -> None:
        """`default_calendar`: the default branch's calendar when the caller already holds one
        (the gateway's, so that its loaded years are shared)."""
        cal = config.calendar
        self.default = Branch(
            DEFAULT_BRANCH,
            DEFAULT_NAME,
            default_calendar or WorkCalendar(cal.timezone, cal.holidays_override),
            cal.window_start_day,
            cal.cutoff_day,
            cal.contacts,
        )
        self._by_id: dict[str, Branch] = {DEFAULT_BRANCH: self.default}
        for branch_id, b in config.branches.declared().items():
            zone = b.timezone or cal.timezone
            override = b.holidays_override if b.holidays_override is not None else cal.holidays_override
            self._by_id[branch_id] = Branch(
                branch_id,
                b.name or branch_id,
                WorkCalendar(zone, override),
                b.window_start_day or cal.window_start_day,
                b.cutoff_day or cal.cutoff_day,
                cal.contacts if b.contacts is None else b.contacts,
            )

    def of(self, branch_id: str | None) -> Branch:
        """The branch of an account whose registry row names `branch_id` (None: the default)."""
        if branch_id is None:
            return self.default
        return self._by_id.get(branch_id, self.default)

    def get(self, branch_id: str) -> Branch | None:
        """The branch configured under this id, else None."""
        return self._by_id.get(branch_id)

    def __iter__(self) -> Iterator[Branch]:
        """The default branch first, then the declared ones in the configuration's order."""
        return iter(self._by_id.values())

    def ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def key_of(self, stored: str | None) -> str:
        """The id an account's stored `branch` counts under (unknown or none: the default)."""
        return self.of(stored).id

    def members(self, branch: Branch) -> Any:
        """SQL condition: the account (`accounts` row) belongs to `branch`."""
        if branch is not self.default:
            return accounts.c.branch == branch.id
        others = [b for b in self._by_id if b != DEFAULT_BRANCH]
        if not others:
            return accounts.c.id.is_not(None)  # every account
        return or_(accounts.c.branch.is_(None), accounts.c.branch.not_in(others))

    def preload(self, *years: int) -> None:
        """Load these federal years into every branch's calendar now, not inside a decision."""
        for branch in self:
            branch.calendar.preload(*years)
