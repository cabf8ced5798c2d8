"""What every meter link shares, whatever the protocol: the failure a read ends in (`ReadError`, its
`kind` counted per meter), a link's counters (`LinkStats`) and the timing of a serial line
computed from its settings (`LineTiming`).

Pure Python: the drivers, the links and the simulators import it without a channel library.
"""

from __future__ import annotations

from dataclasses import dataclass

RTU_REQUEST_BYTES = 8  # Modbus RTU read request: unit, function, address (2), count (2), CRC (2)


class ReadError(Exception):
    """A request that did not give register words; `kind` is what the poller counts."""

    def __init__(self, kind: str, detail: str = "", code: int | None = None) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.code = code


@dataclass(frozen=True, slots=True)
class LineTiming:
    """Serial line timing derived from its settings."""

    baudrate: int
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    @property
    def bits_per_char(self) -> int:
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def char_seconds(self) -> float:
        return self.bits_per_char / self.baudrate

    @property
    def silent_interval(self) -> float:
        """t3.5: the gap that ends a frame; fixed at 1.75 ms above 19200 baud (spec 2.5.1.1)."""
        return 0.00175 if self.baudrate > 19200 else 3.5 * self.char_seconds

    def frame_seconds(self, nbytes: int) -> float:
        return nbytes * self.char_seconds

    def read_timeout(self, count: int, response_ms: int, latency_ms: int) -> float:
        """Seconds to wait for the reply to a read of `count` registers."""
        return (
            self.frame_seconds(RTU_REQUEST_BYTES)
            + response_ms / 1000
            + self.frame_seconds(rtu_reply_bytes(count))
            + self.silent_interval
            + latency_ms / 1000
        )

    def wire_requests_per_second(self, count: int) -> float:
        """Upper bound of reads of `count` registers per second that the line itself allows."""
        busy = (
            self.frame_seconds(RTU_REQUEST_BYTES)
            + self.frame_seconds(rtu_reply_bytes(count))
            + 2 * self.silent_interval
        )
        return 1 / busy


# Software parity: a 7-bit character with its parity bit in bit 7 is, on the wire, exactly the
# 7E1 (or 7O1) character: start, 7 data bits, parity, stop. A port or converter that carries only
# 8N1 thus carries a 7E1 line when the gateway adds the bit on sending and checks it on receiving.
def _with_parity(odd: bool) -> bytes:
    return bytes(c | (0x80 if (bin(c).count("1") % 2 == 1) != odd else 0) for c in range(128)) * 2


PARITY_TABLES = {"E": _with_parity(odd=False), "O": _with_parity(odd=True)}
SEVEN_BITS = bytes(c & 0x7F for c in range(256))


def add_parity(data: bytes, parity: str) -> bytes:
    """7-bit characters with their even (E) or odd (O) parity bit in bit 7."""
    return data.translate(PARITY_TABLES[parity])


def strip_parity(data: bytes, parity: str) -> tuple[bytes, int]:
    """The 7-bit characters of what a 7E1/7O1 line carried, and how many had a wrong parity bit."""
    seven = data.translate(SEVEN_BITS)
    expected = seven.translate(PARITY_TABLES[parity])
    bad = 0 if expected == data else sum(1 for a, b in zip(expected, data, strict=True) if a != b)
    return seven, bad


def rtu_reply_bytes(count: int) -> int:
    """unit, function, byte count, 2 bytes per register, CRC."""
    return 5 + 2 * count


@dataclass(slots=True)
class LinkStats:
    requests: int = 0
    opened: int = 0
    open_failures: int = 0
    reopened: int = 0
    last_open_error: str | None = None
    next_open_at: float = 0.0  # monotonic time before which open() is not tried again
    open_backoff: float = 0.0
