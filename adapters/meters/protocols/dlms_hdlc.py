"""DLMS/COSEM over HDLC (IEC 62056-46, "DLMS/COSEM three-layer, connection-oriented, HDLC based
communication profile"; ГОСТ Р 58940-2020 and the СПОДЭС profile use it on RS-485 lines and
optical ports): the frames, their addresses and check sequences. Bytes only: no I/O, no timing.

A frame (frame format type 3, the clauses on frame format and on the HDLC address field):

    7E | A0+S+len(11 bits) | destination | source | control | HCS | LLC + information | FCS | 7E

- the length counts every byte between the two flags; S (0x08) marks a segment that a further
  frame continues;
- an address is 7 bits per byte with the lowest bit 1 on its last byte: the client's is one byte
  (its SAP: 16 public client, 32 reading client, 48 configurator in СПОДЭС), the server's is the
  logical device (upper HDLC address, 1 for the management logical device) and the physical device
  (lower HDLC address, 0x10..0x3FFD), in two bytes when both fit in 7 bits, else in four;
- HCS and FCS are CRC-16/X.25 (polynomial 0x1021 reflected, initial 0xFFFF, complemented), least
  significant byte first; a frame without information carries the FCS only;
- control: SNRM 0x93 and UA 0x73 open the link, DISC 0x53 closes it, DM 0x1F refuses;
  I-frames carry N(R) in bits 7-5, P/F in bit 4 and N(S) in bits 3-1;
- the information of an I-frame starts with the LLC header (IEC 62056-46, clause on the LLC
  sublayer): E6 E6 00 from the client, E6 E7 00 from the server.

The default maximum information field length is 128 bytes each way; this module neither sends
nor expects segmented frames (a register's GET answer is far shorter).
"""

from __future__ import annotations

from dataclasses import dataclass

FLAG = 0x7E
FORMAT_TYPE_3 = 0xA0
SEGMENT = 0x08
SNRM, UA, DISC, DM, FRMR = 0x93, 0x73, 0x53, 0x1F, 0x97
LLC_REQUEST = b"\xe6\xe6\x00"
LLC_RESPONSE = b"\xe6\xe7\x00"
MAX_FRAME = 2048  # the 11-bit length field's reach; a longer "frame" is noise
PHYSICAL_MIN, PHYSICAL_MAX = 0x10, 0x3FFD  # lower HDLC addresses a meter may have


class FrameError(ValueError):
    """Bytes that are no HDLC frame; `kind` is "crc" (wrong HCS/FCS) or "garbage"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def crc16(data: bytes) -> int:
    """CRC-16/X.25 of `data` (IEC 62056-46's HCS and FCS)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def _check(data: bytes) -> bytes:
    return crc16(data).to_bytes(2, "little")


@dataclass(frozen=True, slots=True)
class ServerAddress:
    logical: int = 1
    physical: int = PHYSICAL_MIN

    def encode(self) -> bytes:
        if self.logical < 0x80 and self.physical < 0x80:
            return bytes([self.logical << 1, (self.physical << 1) | 1])
        return bytes(
            [
                (self.logical >> 7) << 1,
                (self.logical & 0x7F) << 1,
                (self.physical >> 7) << 1,
                ((self.physical & 0x7F) << 1) | 1,
            ]
        )


def client_address(sap: int) -> bytes:
    return bytes([(sap << 1) | 1])


def _split_address(data: bytes, at: int) -> tuple[bytes, int]:
    """The address starting at `at`: its bytes up to the one whose lowest bit is 1."""
    end = at
    while end < len(data) and not data[end] & 1:
        end += 1
        if end - at > 4:
            raise FrameError("garbage", "an HDLC address longer than 4 bytes")
    if end >= len(data):
        raise FrameError("garbage", "the HDLC address does not end")
    return data[at : end + 1], end + 1


def decode_server_address(raw: bytes) -> ServerAddress:
    v = [b >> 1 for b in raw]
    if len(v) == 1:
        return ServerAddress(v[0], 0)
    if len(v) == 2:
        return ServerAddress(v[0], v[1])
    if len(v) == 4:
        return ServerAddress((v[0] << 7) | v[1], (v[2] << 7) | v[3])
    raise FrameError("garbage", f"a server address of {len(raw)} bytes")


@dataclass(frozen=True, slots=True)
class Frame:
    destination: bytes  # the address bytes as on the wire
    source: bytes
    control: int
    information: bytes = b""
    segmented: bool = False

    def encode(self) -> bytes:
        length = (
            2
            + len(self.destination)
            + len(self.source)
            + 1
            + 2
            + (len(self.information) + 2 if self.information else 0)
        )
        if length > MAX_FRAME:
            raise ValueError("an HDLC frame longer than its length field allows")
        head = (
            bytes([FORMAT_TYPE_3 | (SEGMENT if self.segmented else 0) | (length >> 8), length & 0xFF])
            + self.destination
            + self.source
            + bytes([self.control])
        )
        if self.information:
            head += _check(head) + self.information
        return bytes([FLAG]) + head + _check(head) + bytes([FLAG])

    @property
    def is_information(self) -> bool:
        return not self.control & 1

    @property
    def send_sequence(self) -> int:
        return (self.control >> 1) & 7

    @property
    def receive_sequence(self) -> int:
        return (self.control >> 5) & 7


def i_control(send_sequence: int, receive_sequence: int) -> int:
    """The control byte of an I-frame with the poll/final bit set."""
    return ((receive_sequence & 7) << 5) | 0x10 | ((send_sequence & 7) << 1)


def frame_complete(buffer: bytes) -> int | None:
    """Length of the whole frame at the start of `buffer` (flags included); None while it is not whole."""
    if buffer[:1] != bytes([FLAG]):
        raise FrameError("garbage", f"an HDLC frame starts with 7E, not {buffer[:16].hex(' ')}")
    if len(buffer) < 3:
        return None
    if buffer[1] & 0xF0 != FORMAT_TYPE_3:
        raise FrameError("garbage", f"not an HDLC frame of format type 3: {buffer[:16].hex(' ')}")
    total = (((buffer[1] & 0x07) << 8) | buffer[2]) + 2
    if total < 9:
        raise FrameError("garbage", f"an HDLC frame of {total} bytes")
    if len(buffer) < total:
        return None
    if buffer[total - 1] != FLAG:
        raise FrameError("garbage", "the HDLC frame does not end with its flag where its length says")
    return total


def decode(frame: bytes) -> Frame:
    """A whole frame (as `frame_complete` cut it), its HCS and FCS checked."""
    body = frame[1:-1]
    if crc16(body[:-2]).to_bytes(2, "little") != body[-2:]:
        raise FrameError("crc", "wrong HDLC frame check sequence (FCS)")
    destination, at = _split_address(body, 2)
    source, at = _split_address(body, at)
    if at >= len(body) - 2:
        raise FrameError("garbage", "an HDLC frame without a control field")
    control = body[at]
    at += 1
    information = b""
    if at < len(body) - 2:
        if len(body) - 2 - at < 2:
            raise FrameError("garbage", "an HDLC frame cut inside its header check sequence")
        if crc16(body[:at]).to_bytes(2, "little") != body[at : at + 2]:
            raise FrameError("crc", "wrong HDLC header check sequence (HCS)")
        information = body[at + 2 : -2]
    return Frame(destination, source, control, information, bool(body[0] & SEGMENT))
