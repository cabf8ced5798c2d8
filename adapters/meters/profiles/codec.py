"""Register words <-> exact decimal values, in any byte/word order; the sentinels that mean "no value"."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from adapters.meters.profiles.model import DECIMAL_CONTEXT, TYPES, Register

# --------------------------------------------------------------------------- decoding


def _to_big_endian(words: Sequence[int], order: str) -> bytes:
    seq = list(reversed(words)) if order in ("CDAB", "DCBA") else list(words)
    swap = order in ("BADC", "DCBA")
    out = bytearray()
    for w in seq:
        hi, lo = (w >> 8) & 0xFF, w & 0xFF
        out += bytes((lo, hi)) if swap else bytes((hi, lo))
    return bytes(out)


def _from_big_endian(data: bytes, order: str) -> list[int]:
    swap = order in ("BADC", "DCBA")
    words = [
        (data[i + 1] << 8 | data[i]) if swap else (data[i] << 8 | data[i + 1]) for i in range(0, len(data), 2)
    ]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    return words


def _float32_text(value: float) -> str:
    """Shortest decimal text that converts back to the same float32."""
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        try:
            if struct.unpack(">f", struct.pack(">f", float(text)))[0] == value:
                return text
        except OverflowError:  # rounding near the float32 maximum went past it
            continue
    return repr(value)  # pragma: no cover - 9 significant digits always round-trip


def _apply_scale(value: Decimal, scale: Decimal) -> Decimal:
    with localcontext(DECIMAL_CONTEXT):
        result = value if scale == 1 else value * scale
        exponent = result.as_tuple().exponent
        if isinstance(exponent, int) and exponent > 0:
            result = result.quantize(Decimal(1))
    return result


def _check_words(register: Register, words: Sequence[int]) -> None:
    if len(words) != register.word_count:
        raise ValueError(
            f"{register.name}: {register.type} needs {register.word_count} words, got {len(words)}"
        )
    for w in words:
        if not isinstance(w, int) or not 0 <= w <= 0xFFFF:
            raise ValueError(f"{register.name}: {w!r} is not a 16-bit register word")


def decode(register: Register, words: Sequence[int]) -> Decimal | None:
    """Decode a register's words to its scaled value; None for the meter's "no value" sentinels."""
    _check_words(register, words)
    words_n, kind = TYPES[register.type]
    data = _to_big_endian(words, register.byte_order)
    raw = int.from_bytes(data, "big")
    bits = words_n * 16
    if raw in register.nan_values:
        return None
    if kind == "u":
        if raw == (1 << bits) - 1:
            return None
        value = Decimal(raw)
    elif kind == "i":
        value = Decimal(raw - (1 << bits) if raw >> (bits - 1) else raw)
    elif kind == "f":
        if bits == 32:
            f = struct.unpack(">f", data)[0]
            if not math.isfinite(f):
                return None
            value = Decimal(_float32_text(f))
        else:
            f = struct.unpack(">d", data)[0]
            if not math.isfinite(f):
                return None
            value = Decimal(repr(f))
    else:  # bcd
        digits = [(raw >> shift) & 0xF for shift in range(bits - 4, -1, -4)]
        if any(d > 9 for d in digits):
            return None
        value = Decimal(int("".join(str(d) for d in digits)))
    result = _apply_scale(value, register.scale)
    if kind == "f":
        # a float carries no resolution: drop the zeros the scale multiplication adds
        result = _apply_scale(result.normalize(DECIMAL_CONTEXT), Decimal(1))
    return result


def encode(register: Register, value: float | int | Decimal | None) -> list[int]:
    """Encode a value into register words (inverse of decode, for simulators and tests).

    ``value`` is the scaled value; integer types round ``value / scale`` to the nearest
    integer (half-even).  ``None`` (or NaN for float types) encodes the "no value" sentinel:
    NaN for floats, all-ones for unsigned/BCD types, the first ``nan_values`` entry otherwise.
    Raises ValueError when the value does not fit the register type.
    """
    words_n, kind = TYPES[register.type]
    bits = words_n * 16
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if kind == "f":
            data = struct.pack(">f", math.nan) if bits == 32 else struct.pack(">d", math.nan)
        elif register.nan_values:
            data = register.nan_values[0].to_bytes(bits // 8, "big")
        elif kind in ("u", "bcd"):
            data = ((1 << bits) - 1).to_bytes(bits // 8, "big")
        else:
            raise ValueError(f"{register.name}: {register.type} has no 'no value' sentinel (add nan_values)")
        return _from_big_endian(data, register.byte_order)

    if kind == "f":
        number = float(value) if register.scale == 1 else float(Decimal(str(value)) / register.scale)
        try:
            data = struct.pack(">f", number) if bits == 32 else struct.pack(">d", number)
        except OverflowError as exc:
            raise ValueError(f"{register.name}: {value!r} does not fit {register.type}") from exc
        return _from_big_endian(data, register.byte_order)

    with localcontext(DECIMAL_CONTEXT):
        scaled = Decimal(str(value)) if not isinstance(value, Decimal) else value
        if not scaled.is_finite():
            raise ValueError(f"{register.name}: {value!r} cannot be encoded as {register.type}")
        raw_dec = (scaled / register.scale).to_integral_value(rounding=ROUND_HALF_EVEN)
    raw = int(raw_dec)
    if kind == "u":
        if not 0 <= raw < (1 << bits):
            raise ValueError(f"{register.name}: {value!r} does not fit {register.type}")
        bits_value = raw
    elif kind == "i":
        if not -(1 << (bits - 1)) <= raw < (1 << (bits - 1)):
            raise ValueError(f"{register.name}: {value!r} does not fit {register.type}")
        bits_value = raw & ((1 << bits) - 1)
    else:  # bcd
        if not 0 <= raw < 10 ** (bits // 4):
            raise ValueError(f"{register.name}: {value!r} does not fit {register.type}")
        bits_value = int(str(raw), 16)
    return _from_big_endian(bits_value.to_bytes(bits // 8, "big"), register.byte_order)
