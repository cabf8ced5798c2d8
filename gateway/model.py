"""The canonical shapes every channel shares: a Submission in, a Verdict out.

Channel adapters build a `Submission` and render a `Verdict`; nothing else crosses the
boundary between `adapters/` and `gateway/`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from enum import IntEnum, StrEnum
from operator import attrgetter
from typing import Any, TypeVar

from gateway.grammar import ParsedReading
from gateway.grammar_failures import ParseFailure

_T = TypeVar("_T")


def _pickled_as_arguments(cls: type[_T]) -> type[_T]:
    """Pickle instances as the constructor call with their field values.

    Submissions and verdicts cross to the SQLite writer process and back by the thousand
    (gateway/writer_process.py); the default pickling of a slotted dataclass goes through
    __getstate__/__setstate__ at about twice the cost.
    """
    values: Callable[[Any], tuple[Any, ...]] = attrgetter(*(f.name for f in fields(cls)))  # type: ignore[arg-type]

    def __reduce__(self: Any) -> tuple[type[_T], tuple[Any, ...]]:
        return cls, values(self)

    cls.__reduce__ = __reduce__  # type: ignore[assignment,method-assign]
    return cls


class Channel(StrEnum):
    """Where a reading came from; stored with every reading."""

    SMS = "sms"
    TELEGRAM = "telegram"
    CABINET = "cabinet"
    IVR = "ivr"
    OPERATOR = "operator"
    DEVICE = "device"  # pushed by a field device or head-end over HTTP
    MODBUS = "modbus"  # polled by the gateway itself
    MQTT = "mqtt"
    FILE = "file"  # a row of a partner's file (payment agent, bank, terminal, portal, app)
    SITE = "site"  # the form on the retailer's site, without signing in
    PAPER = "paper"  # a paper form (drop-box, fax, mail) typed in on the operators' desk
    MAIL = "mail"  # an e-mail to the readings mailbox (adapters/mail/)


class RuleGroup(StrEnum):
    """Validation thresholds are configured per group of channels."""

    RESIDENTS = "residents"
    OPERATORS = "operators"
    DEVICES = "devices"


CHANNEL_GROUP: dict[Channel, RuleGroup] = {
    Channel.SMS: RuleGroup.RESIDENTS,
    Channel.TELEGRAM: RuleGroup.RESIDENTS,
    Channel.CABINET: RuleGroup.RESIDENTS,
    Channel.IVR: RuleGroup.RESIDENTS,
    Channel.OPERATOR: RuleGroup.OPERATORS,
    Channel.DEVICE: RuleGroup.DEVICES,
    Channel.MODBUS: RuleGroup.DEVICES,
    Channel.MQTT: RuleGroup.DEVICES,
    # Values someone other than the resident wrote down: held for the back office when unusual,
    # never asked back (a partner's file and a paper form have no one to ask).
    Channel.FILE: RuleGroup.OPERATORS,
    Channel.PAPER: RuleGroup.OPERATORS,
    Channel.SITE: RuleGroup.RESIDENTS,
    Channel.MAIL: RuleGroup.RESIDENTS,
}


class Severity(IntEnum):
    """How a reason affects the verdict; the worst reason wins."""

    INFO = 0  # accepted; the sender is told something (e.g. counted for the next period)
    FLAG = 1  # stored, held for the back office before billing
    CONFIRM = 2  # stored, held until the sender confirms the value
    REJECT = 3  # stored as rejected, never billed


class Status(StrEnum):
    """The verdict a sender sees."""

    ACCEPTED = "accepted"
    FLAGGED = "flagged"
    NEEDS_CONFIRMATION = "needs_confirmation"
    REJECTED = "rejected"


STATUS_BY_SEVERITY = {
    Severity.INFO: Status.ACCEPTED,
    Severity.FLAG: Status.FLAGGED,
    Severity.CONFIRM: Status.NEEDS_CONFIRMATION,
    Severity.REJECT: Status.REJECTED,
}


@_pickled_as_arguments
@dataclass(frozen=True, slots=True)
class Reason:
    """One named finding of one rule, with its explanation built from the actual numbers."""

    code: str
    severity: Severity
    message_ru: str
    message_en: str
    zone: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity.name.lower(),
            "zone": self.zone,
            "message_ru": self.message_ru,
            "message_en": self.message_en,
        }


@_pickled_as_arguments
@dataclass(frozen=True, slots=True)
class Submission:
    """What a channel hands the core: who sent which values for which meter, and the raw message.

    `values` maps a zone code (`T`, `T1`, `T2`, `T3`) to the value exactly as the sender gave it
    (a string, so that "12 345,6" and "abc" reach validation unchanged). A channel that only has
    free text (SMS, chat) puts it in `text` and leaves `values` empty: the core's grammar reads
    it, or the door hands its own parse of the text in `reading`.
    """

    channel: Channel
    received_at: datetime  # UTC, aware
    sender: str  # phone in E.164, chat id, device id, employee login: raw; masked before storing
    values: Mapping[str, str] = field(default_factory=dict)
    account: str | None = None
    meter_serial: str | None = None
    taken_at: datetime | None = None  # when the meter showed the value; defaults to received_at
    channel_message_id: str | None = None  # for deduplication within the channel
    raw: str = ""  # the inbound message as received, stored before anything else
    text: str | None = None
    # Values without a zone label, in the order given: the core maps them onto the meter's zones
    # (one value -> a single-rate meter; two or three -> T1, T2, T3).
    positional_values: tuple[str, ...] = ()
    employee: str | None = None  # who entered it on the resident's behalf (operator channel)
    # The door's parse of `text` (gateway/grammar.py, with the enabled formats), so the text is
    # parsed once; None: the core parses `text` itself (gateway/text_intake.py).
    reading: ParsedReading | ParseFailure | None = None
    # A control reading: taken by the retailer's inspector (a partner's file of handhelds with
    # `control = true`); stored marked as such, and residents' readings are compared with it.
    control: bool = False


@_pickled_as_arguments
@dataclass(frozen=True, slots=True)
class ReadingOut:
    """One stored zone value as the sender is told about it."""

    reading_id: int | None
    zone: str
    value: Decimal | None
    previous_value: Decimal | None = None
    previous_taken_at: datetime | None = None


@_pickled_as_arguments
@dataclass(frozen=True, slots=True)
class Verdict:
    """The core's answer to one Submission: what was decided and why."""

    status: Status
    reasons: tuple[Reason, ...]
    receipt: int | None  # the inbound message id; the same for a repeated message
    account: str | None = None
    meter_serial: str | None = None
    period: str | None = None  # "YYYY-MM" the readings count for
    readings: tuple[ReadingOut, ...] = ()
    duplicate: bool = False

    @property
    def accepted(self) -> bool:
        return self.status is Status.ACCEPTED

    def as_dict(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "receipt": self.receipt,
            "duplicate": self.duplicate,
            "account": self.account,
            "meter_serial": self.meter_serial,
            "period": self.period,
            "readings": [
                {
                    "reading_id": r.reading_id,
                    "zone": r.zone,
                    "value": None if r.value is None else str(r.value),
                }
                for r in self.readings
            ],
            "reasons": [r.as_dict() for r in self.reasons],
        }
