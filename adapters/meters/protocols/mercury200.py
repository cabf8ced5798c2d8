"""Incotex Mercury 200/201/203/206 (single phase): the frames of the family's own binary protocol,
which differs from the 230/234's (adapters/meters/protocols/mercury.py): a four-byte network
address, no channel to open and no password for reading, values in BCD.

Source: Incotex, "Протокол обмена счётчиков Меркурий 200, 203, 206" (ООО «НПК «Инкотекс»): the
frame (сетевой адрес, код команды, данные, CRC), command 27h (чтение накопленной энергии по
тарифам) and command 2Fh (чтение серийного номера). Public implementations were used only to
cross-check facts: wirenboard/wb-mqtt-serial (mercury200 device and its Mercury 200.02 template:
the four BCD tariff values of 27h, 0.01 kWh) and ioBroker.mercury (the serial number of 2Fh as a
32-bit binary number, the total as the sum of the four tariffs).

Every frame, both ways:

    network address (4 bytes, most significant first) | command (1 byte) | data | CRC-16 (2 bytes)

with the Modbus CRC-16 of the 230 family (polynomial 0xA001 reflected, initial 0xFFFF, low byte
first). The answer repeats the address and the command.

    energy by tariffs  addr 27  -> addr 27 T1 T2 T3 T4   (4 bytes each, 8 BCD digits, 0.01 kWh)
    serial number      addr 2F  -> addr 2F s1 s2 s3 s4   (a 32-bit number, most significant first)

The factory sets the network address from the serial number; an installer may change it. The
answer carries no total: the gateway adds the four tariffs when a meter is billed as one zone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adapters.meters.protocols.mercury import FrameError, crc_ok, frame

ENERGY, SERIAL = 0x27, 0x2F
ADDRESSES = range(0, 1 << 32)  # four bytes
TARIFFS = range(1, 5)
REQUEST_FRAME = 4 + 1 + 2
ENERGY_FRAME = 4 + 1 + 16 + 2
SERIAL_FRAME = 4 + 1 + 4 + 2
ANSWER_FRAMES = {ENERGY: ENERGY_FRAME, SERIAL: SERIAL_FRAME}
# The longest an answer waits after a request at 9600 baud (the 230 family's figure; the driver
# adds the answer's transmission time and the bus's latency).
RESPONSE_S = 0.15

__all__ = ["FrameError"]  # the line's errors are the 230 family's


def request(address: int, command: int) -> bytes:
    """A request: the address, the command and the CRC (7 bytes)."""
    if address not in ADDRESSES:
        raise ValueError(f"network address {address} is not four bytes")
    return frame(address.to_bytes(4, "big") + bytes([command]))


def answer_complete(expected: int) -> Callable[[bytes], int | None]:
    """The `complete` function of a StreamLink for an answer of `expected` bytes: its length once
    whole, else minus the bytes still missing (the family has no short refusal frame)."""

    def complete(buffer: bytes) -> int | None:
        got = len(buffer)
        if got < expected:
            return -(expected - got)
        if not crc_ok(buffer[:expected]):
            raise FrameError("crc", f"the answer's CRC is wrong ({buffer[:expected].hex(' ')})")
        return expected

    return complete


def check_answer(address: int, command: int, data: bytes) -> bytes:
    """The data of an answer (between the command and the CRC); FrameError for a wrong CRC or
    length, another meter's answer or another command's."""
    expected = ANSWER_FRAMES[command]
    if len(data) != expected:
        raise FrameError("garbage", f"an answer of {len(data)} bytes where {expected} were expected")
    if not crc_ok(data):
        raise FrameError("crc", f"the answer's CRC is wrong ({data.hex(' ')})")
    if int.from_bytes(data[:4], "big") != address or data[4] != command:
        raise FrameError(
            "garbage",
            f"an answer from {int.from_bytes(data[:4], 'big')} to command {data[4]:02X}, "
            f"not from {address} to {command:02X}",
        )
    return data[5:-2]


def bcd(four: bytes) -> int:
    """Eight BCD digits, most significant first, as an integer (hundredths of a kWh)."""
    digits = four.hex()
    if len(four) != 4 or not digits.isdigit():
        raise FrameError("garbage", f"{four.hex(' ')} is not eight BCD digits")
    return int(digits)


def bcd_bytes(value: int) -> bytes:
    """The four BCD bytes of 0..99999999 (the simulator's)."""
    if not 0 <= value <= 99_999_999:
        raise ValueError("a BCD value is 0..99999999")
    return bytes.fromhex(f"{value:08d}")


def energy_values(payload: bytes) -> dict[int, int]:
    """A 27h answer's data: tariff 1..4 -> hundredths of a kWh."""
    if len(payload) != 16:
        raise FrameError("garbage", f"an energy answer carries 16 bytes, not {len(payload)}")
    return {t: bcd(payload[4 * (t - 1) : 4 * t]) for t in TARIFFS}


def serial_text(payload: bytes) -> str:
    """The serial number of a 2Fh answer: a 32-bit number, most significant byte first."""
    if len(payload) != 4:
        raise FrameError("garbage", f"a serial number is four bytes, not {len(payload)}")
    return str(int.from_bytes(payload, "big"))


@dataclass(frozen=True, slots=True)
class Request:
    """A request as the meter sees it (the simulator's parse)."""

    address: int
    command: int


def parse_request(data: bytes) -> Request:
    if len(data) != REQUEST_FRAME or not crc_ok(data):
        raise FrameError("crc", "not a request with a valid CRC")
    return Request(int.from_bytes(data[:4], "big"), data[4])
