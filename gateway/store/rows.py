"""Database rows as the validation rules see them: one place that knows the column layout."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gateway.validation.context import MeterInfo, ZoneState


def meter_info(row: Any, account: str, meter_id_key: str = "id") -> MeterInfo:
    """A `meters` row (a mapping) and its account number -> MeterInfo."""
    return MeterInfo(
        id=row[meter_id_key],
        account_id=row["account_id"],
        account=account,
        serial=row["serial"],
        zones=tuple(row["zones"].split(";")),
        digits=row["digits"],
        max_power_kw=Decimal(row["max_power_kw"]) if row["max_power_kw"] else None,
        active=bool(row["active"]),
    )


def state_from_row(r: Any) -> ZoneState:
    """A `meter_state` row (a mapping) -> ZoneState."""
    return ZoneState(
        last_value=_dec(r["last_value"]),
        last_taken_at=r["last_taken_at"],
        last_receipt=r["last_receipt"],
        last_period=r["last_period"],
        total_kwh=Decimal(r["total_kwh"]),
        total_days=Decimal(r["total_days"]),
        dev_value=_dec(r["dev_value"]),
        dev_taken_at=r["dev_taken_at"],
        res_value=_dec(r["res_value"]),
        res_taken_at=r["res_taken_at"],
    )


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)
