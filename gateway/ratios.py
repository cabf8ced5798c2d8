"""Instrument transformers: a meter connected through current (CT) and voltage (VT) transformers
counts a fraction of the energy that flows; the billed reading is its register times both ratios.

The registry gives each ratio (`ct_ratio`, `vt_ratio` columns, README "Registry CSV") as a
number ("30") or as primary/secondary ("150/5", "10000/100"). The core multiplies here, once,
for every channel: a resident, an operator, a device or a polled meter sends the register as
the meter shows it, and the reading stored for billing is that register times the ratio, with
the register and the ratio kept beside it (`readings.raw_value`, `readings.ratio`).

Bounds: each ratio is above 0 and at most 100,000 with at most 3 decimals once divided, and their
product at most 10,000,000 (a 40000/5 CT with a 110000/100 VT is 8,800,000). A register of at
most 15 integer digits and 3 decimals times such a product fits the 32 characters a stored value
has; the product is computed exactly (no rounding at Decimal's default 28 digits).
"""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation

MAX_RATIO = Decimal(100_000)
MAX_PRODUCT = Decimal(10_000_000)
_EXACT = Context(prec=60)  # register (18 digits) x product (14 digits): every digit kept


def parse_ratio(text: str, column: str) -> Decimal | None:
    """A registry ratio ("30", "150/5", "7,5", empty) -> Decimal or None; ValueError says why not."""
    text = text.strip().replace(",", ".").replace(" ", "")
    if not text:
        return None
    try:
        if "/" in text:
            primary, secondary = text.split("/", 1)
            top, bottom = Decimal(primary), Decimal(secondary)
            if not (top.is_finite() and bottom.is_finite()) or top <= 0 or bottom <= 0:
                raise ValueError
            ratio = _EXACT.divide(top, bottom)
        else:
            ratio = Decimal(text)
            if not ratio.is_finite():
                raise ValueError
    except (InvalidOperation, ValueError):
        raise ValueError(f"{column} {text!r} is not a number like 30 or a ratio like 150/5") from None
    if ratio <= 0 or ratio > MAX_RATIO:
        raise ValueError(f"{column} {text!r} must be above 0 and at most {MAX_RATIO}")
    ratio = _plain(ratio)
    if ratio.as_tuple().exponent < -3:  # type: ignore[operator]
        why = " (the primary does not divide by the secondary exactly)" if "/" in text else ""
        raise ValueError(f"{column} {text!r} has more than 3 decimals{why}")
    return ratio if ratio != 1 else None


def product(ct: Decimal | None, vt: Decimal | None) -> Decimal | None:
    """The ratio applied to the register (None: no transformer, or both 1)."""
    total = _EXACT.multiply(ct or Decimal(1), vt or Decimal(1))
    if total > MAX_PRODUCT:
        raise ValueError(f"ct_ratio x vt_ratio = {total} is above {MAX_PRODUCT}")
    return None if total == 1 else _plain(total)


def _plain(value: Decimal) -> Decimal:
    """Without trailing zeros and without an exponent ("30", not "3E+1"), so that a product keeps
    the register's own decimals and prints as plain digits."""
    value = value.normalize(_EXACT)
    return value.quantize(Decimal(1)) if value.as_tuple().exponent > 0 else value  # type: ignore[operator]


def billed(register: Decimal, ratio: Decimal | None) -> Decimal:
    """The billed value of a register reading: exactly register x ratio."""
    if ratio is None:
        return register
    return _EXACT.multiply(register, ratio)


def text(value: Decimal) -> str:
    """A ratio or a billed value as stored: plain digits, no exponent, no trailing zeros beyond the register's."""
    return format(value, "f")
