"""A DLMS/COSEM register's value as a profile means it: the Register's value (attribute 2) times
ten to its scaler, in the unit its scaler_unit (attribute 3) names, converted to the profile
register's unit (IEC 62056-6-2, class 3 "Register"; unit 30 = Wh, 31 = W... only Wh counts
energy here). A serial number (class 1 "Data") is text.

Profile test vectors of the `dlms` protocol give the A-XDR data of attribute 2 and, for an energy
register, of attribute 3 right after it, as the two GET responses carry them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from adapters.meters.profiles.model import ENERGY_QUANTITIES, IDENTIFICATION_QUANTITY, KWH_PER_UNIT, Register
from adapters.meters.protocols import dlms_apdu

UNIT_KWH_PER: dict[int, Decimal] = {dlms_apdu.UNIT_WH: Decimal("0.001")}  # COSEM unit -> kWh per unit


def register_value(register: Register, value: Any, scaler_unit: Any) -> Decimal | None:
    """An energy register in the profile register's unit; None for a null value (no value).

    ValueError when the meter's unit is no energy unit (never booked)."""
    if value is None:
        return None
    number, unit = dlms_apdu.scaled(value, scaler_unit)
    if register.quantity in ENERGY_QUANTITIES:
        per_unit = UNIT_KWH_PER.get(unit)
        if per_unit is None:
            raise ValueError(f"{register.code}: COSEM unit {unit} is not an energy unit (30 = Wh)")
        number = number * per_unit / KWH_PER_UNIT[register.unit.lower()]
    if register.scale != 1:
        number *= register.scale
    return number


def vector_value(register: Register, data: bytes) -> Decimal | None:
    """What the driver makes of a test vector's bytes (ValueError when it cannot)."""
    value, at = dlms_apdu.decode_data(data)
    if register.quantity == IDENTIFICATION_QUANTITY:
        text = dlms_apdu.text_of(value)
        return None if text is None else Decimal(text) if text.isdigit() else None
    scaler_unit, end = dlms_apdu.decode_data(data, at) if at < len(data) else (None, at)
    if end != len(data):
        raise ValueError("bytes after the vector's scaler_unit")
    if value is not None and scaler_unit is None:
        raise ValueError("an energy vector gives attribute 2 and then attribute 3 (scaler_unit)")
    return register_value(register, value, scaler_unit)
