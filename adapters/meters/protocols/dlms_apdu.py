"""DLMS/COSEM application layer as a СПОДЭС meter is read: the association (AARQ/AARE with
low-level security, a password), GET of one attribute by logical name, the release, and the
A-XDR data they carry; and the TCP wrapper that carries them without HDLC. Bytes only.

Sources: IEC 62056-5-3 (formerly 62056-53, COSEM application layer: the ACSE APDUs in BER, the
xDLMS InitiateRequest/Response, GET-Request-Normal/GET-Response-Normal, Data-Access-Result, the
conformance block), IEC 62056-6-2 (interface classes: Data = 1 with its value in attribute 2;
Register = 3 with value in attribute 2 and scaler_unit {integer scaler, enum unit} in attribute 3;
unit 30 = Wh), IEC 62056-9-7 (formerly 62056-47, the TCP-UDP wrapper: version 1, source and
destination wPort, length) and the DLMS UA Green Book's worked examples of these APDUs. The
Russian profile: ГОСТ Р 58940-2020 and СТО 34.01-5.1-006 (СПОДЭС) fix the logical names read
here (1.0.1.8.0.255 active energy import total, 1.0.1.8.1.255..1.0.1.8.4.255 by tariff,
0.0.96.1.0.255 the serial number) and the clients (16 public, 32 reading with a password).

    AARQ  60 L  A1 09 06 07 60 85 74 05 08 01 01      application context: logical names, no ciphering
                8A 02 07 80                           ACSE requirements: authentication
                8B 07 60 85 74 05 08 02 01            mechanism name: low-level security
                AC L 80 L <password>                  calling authentication value
                BE L 04 L <InitiateRequest>           user information
    AARE  61 L  A1 ..  A2 03 02 01 <result>  A3 05 A1|A2 03 02 01 <diagnostic>  [BE L 04 L <InitiateResponse>]
    GET   C0 01 <invoke> <class 2> <logical name 6> <attribute 1> 00
          C4 01 <invoke> 00 <Data> | C4 01 <invoke> 01 <Data-Access-Result>
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

LN_NO_CIPHERING = bytes.fromhex("60857405080101")
LOW_LEVEL_SECURITY = bytes.fromhex("60857405080201")
CONFORMANCE_GET = 0x000010  # the conformance block's bit 19 ("get"): the only service asked for
CLIENT_MAX_PDU = 0x0400
DLMS_VERSION = 6
MAX_PASSWORD = 32  # bytes of an LLS secret accepted from the configuration
WRAPPER_VERSION = 1
WRAPPER_HEADER = 8
MAX_WRAPPED = 4096  # a longer wrapped APDU is not a meter's answer to these requests

DATA_CLASS, REGISTER_CLASS = 1, 3
VALUE_ATTRIBUTE, SCALER_UNIT_ATTRIBUTE = 2, 3
UNIT_WH = 30

# acse-service-user diagnostics (IEC 62056-5-3, AARE result-source-diagnostic)
USER_DIAGNOSTICS = {
    0: "null",
    1: "no reason given",
    2: "application context name not supported",
    11: "authentication mechanism name not recognised",
    12: "authentication mechanism name required",
    13: "authentication failure",
    14: "authentication required",
}
AUTHENTICATION_FAILURE = 13
DATA_ACCESS_RESULTS = {
    1: "hardware-fault",
    2: "temporary-failure",
    3: "read-write-denied",
    4: "object-undefined",
    9: "object-class-inconsistent",
    11: "object-unavailable",
    12: "type-unmatched",
    13: "scope-of-access-violated",
    250: "other-reason",
}


class ApduError(ValueError):
    """Bytes that are not the APDU expected; `kind` is what the poller counts ("garbage", "exception")."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


# -- logical names ---------------------------------------------------------------------------


def obis(code: str) -> bytes:
    """ "1.0.1.8.0.255" -> its six bytes; ValueError for anything else."""
    parts = code.split(".")
    if len(parts) != 6 or not all(p.isdigit() and int(p) <= 255 for p in parts):
        raise ValueError(f"{code!r} is no logical name A.B.C.D.E.F (six numbers 0..255)")
    return bytes(int(p) for p in parts)


def obis_text(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


# -- BER pieces of the ACSE APDUs --------------------------------------------------------------


def _ber(tag: int, content: bytes) -> bytes:
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    if len(content) < 0x100:
        return bytes([tag, 0x81, len(content)]) + content
    return bytes([tag, 0x82]) + len(content).to_bytes(2, "big") + content


def _ber_items(data: bytes) -> list[tuple[int, bytes]]:
    items: list[tuple[int, bytes]] = []
    at = 0
    while at < len(data):
        if at + 2 > len(data):
            raise ApduError("garbage", "a BER item cut short")
        tag, length = data[at], data[at + 1]
        at += 2
        if length & 0x80:
            n = length & 0x7F
            if n not in (1, 2) or at + n > len(data):
                raise ApduError("garbage", "a BER length that does not fit")
            length = int.from_bytes(data[at : at + n], "big")
            at += n
        if at + length > len(data):
            raise ApduError("garbage", "a BER item longer than the APDU")
        items.append((tag, data[at : at + length]))
        at += length
    return items


def initiate_request(max_pdu: int = CLIENT_MAX_PDU, conformance: int = CONFORMANCE_GET) -> bytes:
    """xDLMS InitiateRequest in A-XDR: no dedicated key, response allowed, no QoS, version 6."""
    return (
        bytes([0x01, 0x00, 0x00, 0x00, DLMS_VERSION, 0x5F, 0x1F, 0x04, 0x00])
        + conformance.to_bytes(3, "big")
        + max_pdu.to_bytes(2, "big")
    )


def aarq(password: bytes | None) -> bytes:
    """The association request: low-level security when a password is given, else none (public client)."""
    content = _ber(0xA1, _ber(0x06, LN_NO_CIPHERING))
    if password is not None:
        content += _ber(0x8A, b"\x07\x80") + _ber(0x8B, LOW_LEVEL_SECURITY)
        content += _ber(0xAC, _ber(0x80, password))
    content += _ber(0xBE, _ber(0x04, initiate_request()))
    return _ber(0x60, content)


@dataclass(frozen=True, slots=True)
class AssociationRequest:
    """What the simulated meter reads from an AARQ."""

    context: bytes
    mechanism: bytes | None
    password: bytes | None
    initiate: bytes


def parse_aarq(apdu: bytes) -> AssociationRequest:
    items = _ber_items(apdu)
    if len(items) != 1 or items[0][0] != 0x60:
        raise ApduError("garbage", "not an AARQ")
    context = mechanism = password = None
    initiate = b""
    for tag, value in _ber_items(items[0][1]):
        if tag == 0xA1:
            context = _ber_items(value)[0][1]
        elif tag == 0x8B:
            mechanism = value
        elif tag == 0xAC:
            password = _ber_items(value)[0][1]
        elif tag == 0xBE:
            initiate = _ber_items(value)[0][1]
    if context is None or not initiate:
        raise ApduError("garbage", "an AARQ without application context or user information")
    return AssociationRequest(context, mechanism, password, initiate)


@dataclass(frozen=True, slots=True)
class AssociationResponse:
    result: int  # 0 accepted, 1 rejected (permanent), 2 rejected (transient)
    diagnostic: int  # acse-service-user (or -provider) diagnostic
    user: bool  # the diagnostic is the service user's (the meter's application), not the provider's
    conformance: int | None = None  # negotiated, from the InitiateResponse
    max_pdu: int | None = None

    @property
    def accepted(self) -> bool:
        return self.result == 0

    def reason(self) -> str:
        text = (
            USER_DIAGNOSTICS.get(self.diagnostic, f"diagnostic {self.diagnostic}")
            if self.user
            else (f"provider diagnostic {self.diagnostic}")
        )
        kind = {1: "rejected", 2: "rejected for now"}.get(self.result, f"result {self.result}")
        return f"association {kind}: {text}"


def initiate_response(conformance: int, max_pdu: int) -> bytes:
    return (
        bytes([0x08, 0x00, DLMS_VERSION, 0x5F, 0x1F, 0x04, 0x00])
        + conformance.to_bytes(3, "big")
        + max_pdu.to_bytes(2, "big")
        + b"\x00\x07"  # vaa-name of a logical-name association
    )


def aare(result: int, diagnostic: int, *, lls: bool, conformance: int = 0, max_pdu: int = 0x0200) -> bytes:
    """The association response (for the simulated meter)."""
    content = _ber(0xA1, _ber(0x06, LN_NO_CIPHERING))
    content += _ber(0xA2, _ber(0x02, bytes([result])))
    content += _ber(0xA3, _ber(0xA1, _ber(0x02, bytes([diagnostic]))))
    if lls:
        content += _ber(0x88, b"\x07\x80") + _ber(0x89, LOW_LEVEL_SECURITY)
    if result == 0:
        content += _ber(0xBE, _ber(0x04, initiate_response(conformance, max_pdu)))
    return _ber(0x61, content)


def parse_aare(apdu: bytes) -> AssociationResponse:
    items = _ber_items(apdu)
    if len(items) != 1 or items[0][0] != 0x61:
        raise ApduError("garbage", f"not an AARE: {apdu[:12].hex(' ')}")
    result: int | None = None
    diagnostic, user = 0, True
    conformance = max_pdu = None
    for tag, value in _ber_items(items[0][1]):
        if tag == 0xA2:
            inner = _ber_items(value)
            if not inner or inner[0][0] != 0x02 or len(inner[0][1]) != 1:
                raise ApduError("garbage", "an AARE result that is no small integer")
            result = inner[0][1][0]
        elif tag == 0xA3:
            (source, inner_value), *_ = _ber_items(value)
            user = source == 0xA1
            integer = _ber_items(inner_value)
            diagnostic = integer[0][1][0] if integer and integer[0][1] else 0
        elif tag == 0xBE:
            octets = _ber_items(value)
            ir = octets[0][1] if octets else b""
            if len(ir) >= 14 and ir[0] == 0x08:
                version = 1 + (1 if ir[1] == 0 else 2)  # after the negotiated quality of service, if any
                conformance = int.from_bytes(ir[version + 5 : version + 8], "big")  # after 5F 1F 04 00
                max_pdu = int.from_bytes(ir[version + 8 : version + 10], "big")
    if result is None:
        raise ApduError("garbage", "an AARE without a result")
    return AssociationResponse(result, diagnostic, user, conformance, max_pdu)


RLRQ = bytes.fromhex("6203800100")  # release request, reason normal
RLRE = bytes.fromhex("6303800100")


# -- GET --------------------------------------------------------------------------------------


def invoke_byte(invoke_id: int) -> int:
    """Invoke-Id-And-Priority: high priority, confirmed, the id in the low four bits."""
    return 0xC0 | (invoke_id & 0x0F)


def get_request(invoke_id: int, class_id: int, logical_name: bytes, attribute: int) -> bytes:
    return (
        bytes([0xC0, 0x01, invoke_byte(invoke_id)])
        + class_id.to_bytes(2, "big")
        + logical_name
        + bytes([attribute, 0x00])
    )


@dataclass(frozen=True, slots=True)
class GetRequest:
    invoke: int
    class_id: int
    logical_name: bytes
    attribute: int


def parse_get_request(apdu: bytes) -> GetRequest:
    if len(apdu) != 13 or apdu[:2] != b"\xc0\x01":
        raise ApduError("garbage", f"not a GET-Request-Normal: {apdu[:13].hex(' ')}")
    return GetRequest(apdu[2], int.from_bytes(apdu[3:5], "big"), apdu[5:11], apdu[11])


def get_response(invoke: int, data: bytes | None = None, access_result: int = 0) -> bytes:
    """GET-Response-Normal with data, or with a Data-Access-Result when `data` is None."""
    if data is None:
        return bytes([0xC4, 0x01, invoke, 0x01, access_result])
    return bytes([0xC4, 0x01, invoke, 0x00]) + data


def parse_get_response(apdu: bytes, invoke_id: int) -> Any:
    """The value a GET-Response-Normal carries; ApduError("exception") for a refusal."""
    if apdu[:1] in (b"\x0e", b"\xd8"):  # confirmed-service-error, exception-response
        raise ApduError("exception", f"the meter refused the request: {apdu[:8].hex(' ')}")
    if len(apdu) < 5 or apdu[:2] != b"\xc4\x01":
        raise ApduError("garbage", f"not a GET-Response-Normal: {apdu[:12].hex(' ')}")
    if apdu[2] & 0x0F != invoke_id & 0x0F:
        raise ApduError("garbage", f"the answer is to request {apdu[2] & 0x0F}, not {invoke_id & 0x0F}")
    if apdu[3] == 0x01:
        code = apdu[4]
        raise ApduError(
            "exception", f"data access result {code} ({DATA_ACCESS_RESULTS.get(code, 'unknown')})"
        )
    if apdu[3] != 0x00:
        raise ApduError("garbage", "a GET response that is neither data nor a data access result")
    value, end = decode_data(apdu, 4)
    if end != len(apdu):
        raise ApduError("garbage", "bytes after the GET response's data")
    return value


# -- A-XDR data -------------------------------------------------------------------------------

# fixed-size types: tag -> struct format
_FIXED = {
    0x03: ">?",
    0x05: ">i",
    0x06: ">I",
    0x0F: ">b",
    0x10: ">h",
    0x11: ">B",
    0x12: ">H",
    0x14: ">q",
    0x15: ">Q",
    0x16: ">B",
    0x17: ">f",
    0x18: ">d",
}
_OCTETS = {0x19: 12, 0x1A: 5, 0x1B: 4}  # date-time, date, time: kept as bytes


def _length(data: bytes, at: int) -> tuple[int, int]:
    if at >= len(data):
        raise ApduError("garbage", "A-XDR data cut short")
    first = data[at]
    if first < 0x80:
        return first, at + 1
    n = first & 0x7F
    if not 1 <= n <= 2 or at + 1 + n > len(data):
        raise ApduError("garbage", "an A-XDR length that does not fit")
    return int.from_bytes(data[at + 1 : at + 1 + n], "big"), at + 1 + n


def decode_data(data: bytes, at: int = 0, depth: int = 0) -> tuple[Any, int]:
    """One A-XDR Data value from `at`: (value, the index after it). Strings stay bytes or str."""
    if at >= len(data):
        raise ApduError("garbage", "A-XDR data cut short")
    if depth > 8:
        raise ApduError("garbage", "A-XDR data nested too deep")
    tag = data[at]
    at += 1
    if tag == 0x00:
        return None, at
    if tag in _FIXED:
        fmt = _FIXED[tag]
        size = struct.calcsize(fmt)
        if at + size > len(data):
            raise ApduError("garbage", "A-XDR data cut short")
        return struct.unpack(fmt, data[at : at + size])[0], at + size
    if tag in _OCTETS:
        size = _OCTETS[tag]
        if at + size > len(data):
            raise ApduError("garbage", "A-XDR data cut short")
        return data[at : at + size], at + size
    if tag in (0x01, 0x02):  # array, structure
        count, at = _length(data, at)
        items = []
        for _ in range(count):
            item, at = decode_data(data, at, depth + 1)
            items.append(item)
        return items, at
    if tag in (0x09, 0x0A, 0x0C):  # octet-string, visible-string, utf8-string
        size, at = _length(data, at)
        if at + size > len(data):
            raise ApduError("garbage", "an A-XDR string longer than the APDU")
        raw = data[at : at + size]
        if tag == 0x09:
            return raw, at + size
        return raw.decode("utf-8" if tag == 0x0C else "ascii", "replace"), at + size
    raise ApduError("garbage", f"A-XDR type {tag:#04x} is not read here")


def encode_unsigned(value: int) -> bytes:
    """double-long-unsigned when it fits, else long64-unsigned (an energy counter)."""
    if 0 <= value < 1 << 32:
        return b"\x06" + value.to_bytes(4, "big")
    return b"\x15" + value.to_bytes(8, "big")


def encode_octets(value: bytes, tag: int = 0x09) -> bytes:
    if len(value) >= 0x80:
        raise ValueError("a string this long is not simulated")
    return bytes([tag, len(value)]) + value


def encode_scaler_unit(scaler: int, unit: int) -> bytes:
    return bytes([0x02, 0x02, 0x0F, scaler & 0xFF, 0x16, unit])


def scaled(value: Any, scaler_unit: Any) -> tuple[Decimal, int]:
    """(value × 10^scaler, unit) of a Register's attributes 2 and 3; ApduError when they are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApduError("garbage", f"a register value that is no number: {value!r}")
    if (
        not isinstance(scaler_unit, list)
        or len(scaler_unit) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in scaler_unit)
    ):
        raise ApduError("garbage", f"a scaler_unit that is no {{scaler, unit}} structure: {scaler_unit!r}")
    scaler, unit = scaler_unit
    number = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    return number.scaleb(scaler), unit


def text_of(value: Any) -> str | None:
    """A serial number as the meter gives it (octet- or visible-string, or a number); None when empty."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip("\x00 ").strip()
    return value or None


# -- the TCP wrapper (IEC 62056-9-7) ------------------------------------------------------------


def wrap(source: int, destination: int, apdu: bytes) -> bytes:
    return struct.pack(">HHHH", WRAPPER_VERSION, source, destination, len(apdu)) + apdu


def wrapped_complete(buffer: bytes) -> int | None:
    """Length of the wrapped APDU at the start of `buffer` (header included), None while not whole."""
    if len(buffer) < WRAPPER_HEADER:
        return None
    version, _, _, length = struct.unpack(">HHHH", buffer[:WRAPPER_HEADER])
    if version != WRAPPER_VERSION or length > MAX_WRAPPED:
        raise ApduError("garbage", f"not a DLMS wrapper header: {buffer[:8].hex(' ')}")
    return WRAPPER_HEADER + length if len(buffer) >= WRAPPER_HEADER + length else None


def unwrap(frame: bytes) -> tuple[int, int, bytes]:
    """(source wPort, destination wPort, APDU) of a whole wrapped frame."""
    _, source, destination, _ = struct.unpack(">HHHH", frame[:WRAPPER_HEADER])
    return source, destination, frame[WRAPPER_HEADER:]
