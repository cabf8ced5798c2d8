"""IEC 62056-21 (formerly IEC 61107; ГОСТ IEC 61107-2011) mode C: the messages of a data readout.

Source: IEC 62056-21:2002 "Electricity metering - Data exchange for meter reading, tariff and
load control - Part 21: Direct local data exchange", its sections on character transmission
(7 data bits, even parity, 1 stop bit; sign-on at 300 baud), the messages (request,
identification, acknowledgement/option select, data), the data set structure, the block check
character and the reaction times; OBIS names of the values from IEC 62056-61.

A mode C readout, as the driver and the simulated meter play it:

    HHU -> meter   / ? address ! CR LF              request (address may be empty: any meter)
    meter -> HHU   / X X X Z ident CR LF            identification: manufacturer, highest baud (Z)
    HHU -> meter   ACK 0 Z 0 CR LF                  option select: normal procedure, baud Z, readout
    (both switch to baud Z)
    meter -> HHU   STX data-block ! CR LF ETX BCC   the data message

The data block is lines of data sets `address(value*unit)`; one address may carry several
values in a row `ET0PE(12.5)(10.0)(2.5)` (Energomera's tariff lists) or on lines that start with
`(`. The BCC is the XOR of every byte after STX up to and including ETX.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

SOH, STX, ETX, ACK, NAK = 0x01, 0x02, 0x03, 0x06, 0x15
CRLF = b"\r\n"

# Mode C baud rate identification character Z -> baud rate (the standard's table for modes C and E).
BAUD_RATES: dict[str, int] = {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600, "6": 19200}
SIGN_ON_BAUD = 300
# Reaction time tr between a message and its answer: 200 ms to 1500 ms; 20 ms minimum when the
# meter announces it (third letter of the manufacturer's identification in lower case).
REACTION_MIN_S = 0.2
REACTION_MIN_FAST_S = 0.02
REACTION_MAX_S = 1.5
INTER_CHAR_MAX_S = 1.5  # ta: longest pause between two characters of one message
MAX_ADDRESS = 32  # characters of a device address
MAX_IDENT = 16  # characters of the identification after Z
MAX_READOUT = 32768  # a data message longer than this is not a meter's readout: refused as garbage
IDENTIFICATION_MAX_BYTES = 1 + 3 + 1 + 2 + MAX_IDENT + 2

_ADDRESS_RE = re.compile(r"^[\x21-\x7e]*$")
_DATA_SET_RE = re.compile(r"([^()\r\n]*)\(([^()]*)\)")


class FrameError(ValueError):
    """Bytes that are not the expected message; `kind` is "crc" (wrong BCC) or "garbage"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def baud_char(baudrate: int) -> str:
    """The Z character of a mode C baud rate."""
    for char, rate in BAUD_RATES.items():
        if rate == baudrate:
            return char
    raise ValueError(
        f"{baudrate} baud is not a mode C baud rate ({', '.join(map(str, BAUD_RATES.values()))})"
    )


def check_address(address: str) -> str:
    """A device address: at most 32 printable characters, none of / ? ! (they delimit the request)."""
    if len(address) > MAX_ADDRESS or not _ADDRESS_RE.match(address) or any(c in address for c in "/?!"):
        raise ValueError(f"device address {address!r}: at most {MAX_ADDRESS} printable characters, not / ? !")
    return address


def request_message(address: str = "") -> bytes:
    return b"/?" + check_address(address).encode("ascii") + b"!" + CRLF


def parse_request(frame: bytes) -> str:
    """The device address of a request message (for the simulated meter)."""
    if not (frame.startswith(b"/?") and frame.endswith(b"!" + CRLF)):
        raise FrameError("garbage", f"not a request message: {frame!r}")
    return frame[2:-3].decode("ascii", "replace")


@dataclass(frozen=True, slots=True)
class Identification:
    manufacturer: str  # three letters, e.g. "EKT" (Energomera)
    baud: str  # Z: the highest baud rate the meter offers
    ident: str  # the meter type and version, e.g. "CE301v12"
    fast_reaction: bool  # the third letter is lower case: the meter answers after 20 ms already

    @property
    def max_baudrate(self) -> int:
        return BAUD_RATES[self.baud]

    def message(self) -> bytes:
        return f"/{self.manufacturer}{self.baud}{self.ident}".encode("ascii") + CRLF


def identification_complete(buffer: bytes) -> int | None:
    """Length of the identification message at the start of `buffer` (None: not whole yet)."""
    end = buffer.find(b"\n")
    if end < 0:
        if len(buffer) > IDENTIFICATION_MAX_BYTES or (buffer and buffer[:1] != b"/"):
            raise FrameError("garbage", f"not an identification message: {buffer[:40]!r}")
        return None
    return end + 1


def parse_identification(frame: bytes) -> Identification:
    text = frame.decode("ascii", "replace")
    m = re.match(r"^/([A-Za-z]{3})([0-9A-Z])(?:\\[0-9A-Z])?([\x21-\x7e]{0,16})\r\n$", text)
    if m is None or m.group(2) not in BAUD_RATES:
        raise FrameError("garbage", f"not a mode C identification message: {frame[:40]!r}")
    manufacturer, z, ident = m.groups()
    return Identification(manufacturer, z, ident, manufacturer[2].islower())


def ack_message(baud: str, mode: str = "0") -> bytes:
    """Acknowledgement/option select: normal protocol procedure ("0"), baud Z, mode ("0" readout)."""
    return bytes([ACK]) + f"0{baud}{mode}".encode("ascii") + CRLF


def parse_ack(frame: bytes) -> tuple[str, str]:
    """(baud Z, mode Y) of an option select message (for the simulated meter)."""
    if len(frame) != 6 or frame[0] != ACK or frame[-2:] != CRLF:
        raise FrameError("garbage", f"not an acknowledgement message: {frame!r}")
    text = frame[1:4].decode("ascii", "replace")
    return text[1], text[2]


def bcc(data: bytes) -> int:
    """Block check character: XOR of the bytes (those after STX/SOH up to and including ETX)."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def data_message(lines: list[str]) -> bytes:
    """STX, the data lines, `!` CR LF, ETX, BCC (for the simulated meter)."""
    body = "".join(line + "\r\n" for line in lines).encode("ascii") + b"!" + CRLF + bytes([ETX])
    return bytes([STX]) + body + bytes([bcc(body)])


def data_message_complete(buffer: bytes) -> int | None:
    """Length of the data message at the start of `buffer` (its BCC included), None while not whole."""
    if buffer[:1] != bytes([STX]):
        raise FrameError("garbage", f"a data message starts with STX, not {buffer[:20]!r}")
    end = buffer.find(bytes([ETX]))
    if end < 0:
        if len(buffer) > MAX_READOUT:
            raise FrameError("garbage", f"a data message longer than {MAX_READOUT} bytes")
        return None
    return end + 2 if len(buffer) >= end + 2 else None


def parse_data_message(frame: bytes) -> dict[str, list[tuple[str, str]]]:
    """The data sets of a whole data message, BCC checked: address -> [(value, unit), ...]."""
    body, check = frame[1:-1], frame[-1]
    if bcc(body) != check:
        raise FrameError("crc", f"wrong BCC: {check:#04x}, computed {bcc(body):#04x}")
    if not body.endswith(b"!" + CRLF + bytes([ETX])):
        raise FrameError("garbage", "the data block does not end with ! CR LF")
    return parse_data_block(body[:-4].decode("ascii", "replace"))


def parse_data_block(text: str) -> dict[str, list[tuple[str, str]]]:
    """Data lines -> address -> values in order; a `(value)` without an address continues the last one."""
    out: dict[str, list[tuple[str, str]]] = {}
    last: str | None = None
    for line in text.splitlines():
        for address, inside in _DATA_SET_RE.findall(line):
            address = address.strip()
            if address:
                last = address
                out.setdefault(address, [])
            if last is None:
                continue
            value, _, unit = inside.partition("*")
            out[last].append((value.strip(), unit.strip()))
    return out


def number(value: str) -> Decimal | None:
    """A data set's value as a number; None when the meter left it empty or it is not a number."""
    if not value:
        return None
    try:
        result = Decimal(value)
    except InvalidOperation:
        return None
    return result if result.is_finite() else None
