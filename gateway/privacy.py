"""Personal data: what of a sender's identity may be stored in readings and written to logs."""

from __future__ import annotations

import re

_PHONE = re.compile(r"\+?\d[\d\s()-]{8,}\d")


def normalize_phone(phone: str) -> str:
    """'8 (916) 123-45-67' -> '+79161234567' (Russian numbers; others keep their digits)."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 11 and digits[0] == "8":
        digits = "7" + digits[1:]
    elif len(digits) == 10 and digits[0] == "9":
        digits = "7" + digits
    return "+" + digits if digits else ""


def mask_phone(phone: str) -> str:
    """'+79161234567' -> '+7916*****67': enough for an operator to tell senders apart, no more."""
    p = normalize_phone(phone)
    if len(p) < 7:
        return "*" * len(p)
    return p[:5] + "*" * (len(p) - 7) + p[-2:]


def mask_phones_in(text: str) -> str:
    """Mask every phone-looking number in free text (log lines)."""
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)
