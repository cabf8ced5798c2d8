"""Incotex Mercury 230/231/233/234/236: the frames of the manufacturer's own binary protocol.

Source: Incotex, "Протокол обмена счётчиков Меркурий 230/231/233/234/236" (протокол обмена
трёхфазных счётчиков электрической энергии серии Меркурий, ООО «НПК «Инкотекс»), the sections on
the frame (сетевой адрес, код запроса, параметры, CRC), the test and open/close channel requests
(уровни доступа и пароли), the state byte of an answer, reading the serial number and date of
manufacture (запрос 08h, параметр 00h) and reading the arrays of accumulated energy (запрос 05h).
Public implementations were used only to cross-check facts (wirenboard/wb-mqtt-serial's
mercury230 device: the byte order of the energy values, the meaning of the state codes).

Every frame, both ways:

    address (1 byte) | request code or answer (1 byte and more) | CRC-16 (2 bytes, low byte first)

with the Modbus CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF). The network address is
1..240; 0 reaches whichever single meter is on the line (universal address); 254 is the
broadcast address, which nobody answers.

    test channel   addr 00                          -> addr 00                   (state byte 0)
    open channel   addr 01 level pwd1..pwd6         -> addr state
    close channel  addr 02                          -> addr state
    serial number  addr 08 00                       -> addr s1 s2 s3 s4 dd mm yy (7 bytes)
    energy         addr 05 (array<<4 | month) tariff -> addr 16 bytes: A+ A- R+ R- (4 bytes each)

An answer that carries no data is the state byte: its low four bits are 0 (done),
1 (invalid request or parameter), 2 (internal error of the meter), 3 (access level too low for
the request), 4 (clock already corrected today), 5 (channel not open). A password is six bytes;
the factory passwords are 111111 for access level 1 (reading) and 222222 for level 2, each digit
sent as a byte of that value (01 01 01 01 01 01). The protocol has no code of its own for a wrong
password: a meter refuses the open request with a non-zero state, and so does the simulated one.

The serial number is four bytes, each a number 0..99 written as two decimal digits ("0C 22 38 4E"
is 12345678). An energy value is four bytes sent in the order [byte 2, byte 3, byte 0, byte 1]
(byte 3 most significant), in watt-hours (varh for R); FF FF FF FF is "no such value" (a
direction or tariff the meter does not count). Array 0 is the energy accumulated from reset;
tariff 0 is the sum of the tariffs, 1..4 the tariffs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

UNIVERSAL = 0x00
BROADCAST = 0xFE
ADDRESSES = range(1, 241)  # unicast network addresses

TEST, OPEN, CLOSE, READ_ARRAY, READ_PARAMETER = 0x00, 0x01, 0x02, 0x05, 0x08
PARAMETER_SERIAL = 0x00
ARRAY_FROM_RESET = 0x0
TARIFFS = range(0, 5)  # 0: the sum, 1..4: the tariffs
LEVEL_READ, LEVEL_ADMIN = 1, 2
DEFAULT_PASSWORDS = {LEVEL_READ: "111111", LEVEL_ADMIN: "222222"}

OK, BAD_REQUEST, INTERNAL, ACCESS, CLOCK, NOT_OPEN = 0, 1, 2, 3, 4, 5
STATES = {
    OK: "done",
    BAD_REQUEST: "invalid request or parameter",
    INTERNAL: "internal error of the meter",
    ACCESS: "access level too low for the request",
    CLOCK: "clock already corrected today",
    NOT_OPEN: "channel not open",
}

STATE_FRAME = 4  # address, state, CRC
SERIAL_FRAME = 1 + 7 + 2
ENERGY_FRAME = 1 + 16 + 2
ENERGY_VALUES = ("A+", "A-", "R+", "R-")  # the four values of an energy answer, in order
NO_VALUE = b"\xff\xff\xff\xff"
# The longest an answer waits after a request (the description's table by speed: 150 ms at
# 9600 baud and above, more below): the driver adds the answer's transmission time itself.
RESPONSE_S = {300: 1.6, 600: 0.8, 1200: 0.4, 2400: 0.25, 4800: 0.18}
RESPONSE_FAST_S = 0.15


class FrameError(ValueError):
    """Bytes that are not the expected answer; `kind` is what the poller counts per meter."""

    def __init__(self, kind: str, detail: str, state: int | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.state = state


def _crc_of_byte(byte: int) -> int:
    crc = byte
    for _ in range(8):
        crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


_CRC_TABLE = tuple(_crc_of_byte(b) for b in range(256))


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), as the description's table computes it.

    Written here (a few lines) rather than taken from pymodbus so that the byte protocols need no
    Modbus library; the tests check it against pymodbus' own. A byte at a time from a table: it
    is on the path of every answer, and bit by bit took a fifth of the gateway's time between an
    answer and the next request at 115200 baud."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def frame(body: bytes) -> bytes:
    """`body` with its CRC appended, low byte first."""
    return body + crc16(body).to_bytes(2, "little")


def crc_ok(data: bytes) -> bool:
    return len(data) >= 3 and crc16(data[:-2]) == int.from_bytes(data[-2:], "little")


# -- requests ----------------------------------------------------------------------------------


def password_bytes(password: str) -> bytes:
    """A password as sent: six characters, digits sent as their values (the factory "111111" is
    01 01 01 01 01 01), any other character as its ASCII code."""
    if len(password) != 6 or not password.isascii() or not password.isprintable():
        raise ValueError("a Mercury password is six printable ASCII characters (111111 by default)")
    return bytes(int(c) if c.isdigit() else ord(c) for c in password)


def open_request(address: int, level: int, password: str) -> bytes:
    return frame(bytes([address, OPEN, level]) + password_bytes(password))


def close_request(address: int) -> bytes:
    return frame(bytes([address, CLOSE]))


def test_request(address: int) -> bytes:
    return frame(bytes([address, TEST]))


def serial_request(address: int) -> bytes:
    return frame(bytes([address, READ_PARAMETER, PARAMETER_SERIAL]))


def energy_request(address: int, tariff: int, array: int = ARRAY_FROM_RESET, month: int = 0) -> bytes:
    if tariff not in TARIFFS:
        raise ValueError(f"tariff {tariff} is not 0 (sum) or 1..4")
    return frame(bytes([address, READ_ARRAY, (array << 4) | month, tariff]))


# -- answers -----------------------------------------------------------------------------------


def answer_complete(expected: int) -> Callable[[bytes], int | None]:
    """The `complete` function of a StreamLink for an answer of `expected` bytes: the length of
    the frame at the start of the buffer once whole, else minus the bytes still missing.

    A state frame (4 bytes, a valid CRC, a state byte whose high bits are clear) ends an answer
    early: the meter refuses the request. The chance that the first four bytes of a longer
    answer look like one is about one in a million."""

    def complete(buffer: bytes) -> int | None:
        got = len(buffer)
        if got >= expected and crc_ok(buffer[:expected]):
            return expected
        if got == STATE_FRAME and expected != STATE_FRAME and buffer[1] & 0xF0 == 0 and crc_ok(buffer):
            return STATE_FRAME
        if got >= expected:
            raise FrameError("crc", f"the answer's CRC is wrong ({buffer[:expected].hex(' ')})")
        # not whole: the reader need not look again before a state frame could be, then the answer
        return -(STATE_FRAME - got) if got < STATE_FRAME else -(expected - got)

    return complete


def check_answer(address: int, data: bytes, expected: int) -> bytes:
    """The payload of an answer of `expected` bytes (between address and CRC); FrameError for a
    state frame (`kind` "exception", `state` its code), a wrong CRC or another meter's answer."""
    if not crc_ok(data):
        raise FrameError("crc", f"the answer's CRC is wrong ({data.hex(' ')})")
    if data[0] != address and address != UNIVERSAL:
        raise FrameError("garbage", f"an answer from network address {data[0]}, not {address}")
    if len(data) == STATE_FRAME and expected != STATE_FRAME:
        state = data[1] & 0x0F
        raise FrameError(
            "exception", f"the meter answers {state}: {STATES.get(state, 'unknown state')}", state
        )
    if len(data) != expected:
        raise FrameError("garbage", f"an answer of {len(data)} bytes where {expected} were expected")
    return data[1:-2]


def state_of(payload: bytes) -> int:
    """The code of a state answer's payload (one byte)."""
    return payload[0] & 0x0F


def serial_text(payload: bytes) -> str:
    """The serial number of a 08h 00h answer: four bytes of 0..99, two digits each."""
    digits = payload[:4]
    if len(digits) != 4 or any(b > 99 for b in digits):
        raise FrameError("garbage", f"serial number bytes {digits.hex(' ')} are not four numbers 0..99")
    return "".join(f"{b:02d}" for b in digits)


def serial_payload(serial: str, day: int = 1, month: int = 1, year: int = 24) -> bytes:
    """The payload a meter with this 8-digit serial number answers to 08h 00h (the simulator's)."""
    if len(serial) != 8 or not serial.isdigit():
        raise ValueError("a Mercury serial number is eight digits")
    return bytes(int(serial[i : i + 2]) for i in range(0, 8, 2)) + bytes([day, month, year])


def energy_value(four: bytes) -> int | None:
    """One energy value in Wh (varh), or None for FF FF FF FF."""
    if len(four) != 4:
        raise FrameError("garbage", "an energy value is four bytes")
    if four == NO_VALUE:
        return None
    return (four[1] << 24) | (four[0] << 16) | (four[3] << 8) | four[2]


def energy_bytes(value: int | None) -> bytes:
    """The four bytes of an energy value as the meter sends them (the simulator's)."""
    if value is None:
        return NO_VALUE
    if not 0 <= value < 0xFFFFFFFF:
        raise ValueError("an energy value is 0..4294967294 Wh")
    b = value.to_bytes(4, "big")  # b[0] most significant: byte 3
    return bytes([b[1], b[0], b[3], b[2]])


def energy_values(payload: bytes) -> dict[str, int | None]:
    """A 05h answer's payload: A+, A-, R+, R- in Wh/varh (None where the meter has no such value)."""
    if len(payload) != 16:
        raise FrameError("garbage", f"an energy answer carries 16 bytes, not {len(payload)}")
    return {name: energy_value(payload[4 * i : 4 * i + 4]) for i, name in enumerate(ENERGY_VALUES)}


@dataclass(frozen=True, slots=True)
class Request:
    """A request as the meter sees it (the simulator's parse)."""

    address: int
    code: int
    params: bytes


def parse_request(data: bytes) -> Request:
    if len(data) < 4 or not crc_ok(data):
        raise FrameError("crc", "not a request with a valid CRC")
    return Request(data[0], data[1], data[2:-2])


def request_length(buffer: bytes) -> int | None:
    """The length of the request at the start of `buffer` by its code (the simulator's framing),
    None while incomplete; FrameError for an unknown code."""
    if len(buffer) < 2:
        return None
    length = {TEST: 4, OPEN: 11, CLOSE: 4, READ_PARAMETER: 5, READ_ARRAY: 6}.get(buffer[1])
    if length is None:
        raise FrameError("garbage", f"unknown request code {buffer[1]:02X}")
    return length if len(buffer) >= length else None


def response_seconds(baudrate: int) -> float:
    """The longest a meter takes to begin its answer at this speed (the description's table)."""
    for speed in sorted(RESPONSE_S):
        if baudrate <= speed:
            return RESPONSE_S[speed]
    return RESPONSE_FAST_S
