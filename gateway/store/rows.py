"""Database rows as the validation rules see them: one place that knows the column layout."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway import ratios
from gateway.store.schema import accounts, meters
from gateway.validation.context import MeterInfo, ZoneState

# The `meters` (and `accounts`) columns `meter_info` reads besides the meter's and its account's
# ids, for queries that select them beside other tables' columns (joined with `accounts`).
METER_INFO_COLUMNS = (
    meters.c.serial,
    meters.c.zones,
    meters.c.digits,
    meters.c.max_power_kw,
    meters.c.active,
    meters.c.ct_ratio,
    meters.c.vt_ratio,
    accounts.c.branch,
)


def meter_info(row: Any, account: str, meter_id_key: str = "id") -> MeterInfo:
    """A `meters` row (a mapping, with the account's `branch` when selected) and its account
    number -> MeterInfo."""
    return MeterInfo(
        id=row[meter_id_key],
        account_id=row["account_id"],
        account=account,
        serial=row["serial"],
        zones=tuple(row["zones"].split(";")),
        digits=row["digits"],
        max_power_kw=Decimal(row["max_power_kw"]) if row["max_power_kw"] else None,
        active=bool(row["active"]),
        ratio=ratios.product(_decimal(row["ct_ratio"]), _decimal(row["vt_ratio"])),
        branch=row.get("branch"),
    )


def _decimal(text: str | None) -> Decimal | None:
    return Decimal(text) if text else None


# The meter_state columns that make a ZoneState, in the order `state_from_values` takes them.
STATE_COLUMNS = (
    "last_value",
    "last_taken_at",
    "last_receipt",
    "last_period",
    "total_kwh",
    "total_days",
    "dev_value",
    "dev_taken_at",
    "res_value",
    "res_taken_at",
    "ctl_value",
    "ctl_taken_at",
)


def state_from_row(r: Any) -> ZoneState:
    """A `meter_state` row (a mapping) -> ZoneState."""
    return state_from_values([r[c] for c in STATE_COLUMNS])


def state_from_values(v: Sequence[Any], time: Callable[[Any], datetime | None] = lambda t: t) -> ZoneState:
    """The STATE_COLUMNS values of a row -> ZoneState; `time` turns a stored time into a datetime
    (`sqlite_time` for rows read straight from the sqlite3 driver)."""
    return ZoneState(
        _dec(v[0]),
        time(v[1]),
        v[2],
        v[3],
        Decimal(v[4]),
        Decimal(v[5]),
        _dec(v[6]),
        time(v[7]),
        _dec(v[8]),
        time(v[9]),
        _dec(v[10]),
        time(v[11]),
    )


def sqlite_time(text: str | None) -> datetime | None:
    """A time as SQLAlchemy stores UtcDateTime on SQLite ('2026-11-24 04:03:54.214673', UTC)."""
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)
