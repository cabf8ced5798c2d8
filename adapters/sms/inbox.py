"""The one path every inbound SMS takes, whichever route delivered it (Kannel, an aggregator).

1. A message this route delivered before (same message id) gets its first reply again: the
   core replays the stored verdict of a reading (never a second reading), commands are
   idempotent, and the reply log hands back the answer stored first, free of the budget.
   (No look-up before the work: on SQLite every transaction takes the write lock, so a
   per-message read would serialise all senders; both stores dedupe inside their batches.)
2. A whole-message command ("помощь", "да", "стоп", "исправить") is answered here: help, the
   confirmation of the sender's latest reading that waits for it (gateway.held), unsubscribing
   from reminders. Everything else is a reading: its text and this one parse of it (with the
   enabled text formats, gateway/formats.py) go to the core intake, which does not parse again.
3. The reply (adapters/sms/text.py) is stored with the message; when the sender has had
   `[sms] replies_per_hour` replies in the last hour it is stored but withheld (empty body), so
   nobody can run up the retailer's SMS bill. The reading itself is always processed.
"""

from __future__ import annotations

import logging
import re
import weakref
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import Counter

from adapters.sms.config import SmsConfig
from adapters.sms.tables import (
    ReplyToStore,
    StoredReply,
    mark_answered,
    opt_in,
    opt_out,
    receipt_awaiting_yes,
    record_replies,
    stored_reply,
)
from adapters.sms.text import (
    NOTHING_TO_CONFIRM,
    SEND_CORRECTED,
    SUBSCRIBED,
    UNSUBSCRIBED,
    render_help,
    render_verdict,
)
from gateway import held
from gateway.bounds import CONTROL
from gateway.grammar import Command, ParsedReading, parse_message
from gateway.group_commit import GroupCommit
from gateway.host import Host
from gateway.http_api import ApiError
from gateway.metrics import Metrics
from gateway.model import Channel, Status, Submission
from gateway.privacy import mask_phone, normalize_phone

log = logging.getLogger(__name__)


# Bounds of what a route may hand on (a 400 naming the field otherwise): a phone in any notation
# fits 32 characters, a route's message id 100; a text of ten concatenated SMS parts, 1600.
MAX_PHONE = 32
MAX_MESSAGE_ID = 100
MAX_TEXT = 1600
_TEXT_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def bounded_field(value: str, name: str, longest: int) -> str:
    """A sender or message id as a route gave it, or ApiError(400) naming the field."""
    if len(value) > longest or CONTROL.search(value):
        raise ApiError(
            400, "bad_parameter", f"{name} must be at most {longest} characters without control characters"
        )
    return value


def bounded_text(text: str, name: str) -> str:
    """The message text with control characters (other than line breaks and tabs) made spaces:
    a resident's SMS is read, not refused, for a stray byte of a handset's encoder."""
    if len(text) > MAX_TEXT:
        raise ApiError(400, "bad_parameter", f"{name} must be at most {MAX_TEXT} characters")
    return _TEXT_CONTROLS.sub(" ", text)


@dataclass(frozen=True, slots=True)
class InboundSms:
    """One SMS as a route delivered it."""

    route: str  # "kannel", "twilio": namespaces the message id
    message_id: str  # the route's id of this message (Kannel %I, Twilio MessageSid)
    phone: str  # the sender as the route gave it
    text: str
    raw: str  # the message as received (its parameters as JSON, secrets removed)


def _without_phone(raw: str, *forms: str) -> str:
    """The raw message with the sender's phone masked: kept until the retention purge, it must
    not hold in full what the reading's masked source hides (gateway/retention.py)."""
    for form in sorted({f for f in forms if len(f) >= 5}, key=len, reverse=True):
        raw = raw.replace(form, mask_phone(form))
    return raw


_COUNTERS: weakref.WeakKeyDictionary[Metrics, Counter] = weakref.WeakKeyDictionary()


def _replies_counter(metrics: Metrics) -> Counter:
    """`gateway_sms_replies_total{route,outcome}`, registered once per gateway's metrics."""
    counter = _COUNTERS.get(metrics)
    if counter is None:
        counter = Counter(
            "gateway_sms_replies_total",
            "Inbound SMS by route and what was answered: sent, withheld (over the hourly budget), replayed",
            ["route", "outcome"],
            registry=metrics.registry,
        )
        _COUNTERS[metrics] = counter
    return counter


class SmsInbox:
    """Answers inbound SMS: dedupe, commands, the intake, the reply budget."""

    def __init__(self, host: Host) -> None:
        self.engine = host.engine
        self.config = host.config
        self.sms = host.config.section("sms", SmsConfig)
        self.intake = host.intake
        self.clock = host.clock
        self.formats = host.config.text_formats.formats()
        self.replies = _replies_counter(host.metrics)
        # One writer: whatever answers accumulated while the last commit ran share the next one.
        self._log = GroupCommit(self._write, "sms-reply-log", max_batch=500)

    async def handle(self, sms: InboundSms) -> str:
        """The reply to send back ("" for none); stored before it is returned."""
        now = self.clock()
        phone = normalize_phone(sms.phone) or sms.phone.strip()[:20]
        limits = self.sms
        parsed = parse_message(sms.text, self.formats)
        receipt: int | None = None
        status: str | None = None
        if isinstance(parsed, Command):
            kind = parsed.name
            if kind in ("confirm", "stop"):  # they change state: a redelivery must not act again
                before = await stored_reply(self.engine, sms.route, sms.message_id[:128])
                if before is not None:
                    self.replies.labels(sms.route, "replayed").inc()
                    return before.reply
            reply = await self._command(parsed.name, phone)
        else:
            kind = "reading"
            verdict = await self.intake.submit(
                Submission(
                    channel=Channel.SMS,
                    received_at=now,
                    sender=phone,
                    text=sms.text,
                    reading=parsed,
                    channel_message_id=f"{sms.route}:{sms.message_id}"[:128],
                    raw=_without_phone(sms.raw, sms.phone, phone),
                )
            )
            receipt, status = verdict.receipt, verdict.status.value
            # the meter is echoed when the text named it (and the registry took it as the meter)
            named_meter = isinstance(parsed, ParsedReading) and any(
                r.meter_serial is not None and r.meter_serial == verdict.meter_serial
                for r in parsed.readings()
            )
            reply = render_verdict(verdict, limits.reply_max_chars, show_meter=named_meter)
        stored = await self._store(
            ReplyToStore(sms.route, sms.message_id, phone, now, kind, reply, receipt, status)
        )
        if stored.replayed:
            outcome = "replayed"
        elif stored.withheld:
            outcome = "withheld"
        else:
            outcome = "sent" if stored.reply else "empty"
        self.replies.labels(sms.route, outcome).inc()
        log.info(
            "sms via %s from %s: %s %s, reply %s", sms.route, mask_phone(phone), kind, status or "", outcome
        )
        return stored.reply

    async def _store(self, item: ReplyToStore) -> StoredReply:
        """Store the answer (and apply the reply budget) in the next group commit of the reply log."""
        return await self._log.submit(item)

    async def _write(self, batch: list[ReplyToStore]) -> list[StoredReply]:
        try:
            return await record_replies(self.engine, batch, self.sms.replies_per_hour)
        except Exception:  # the database is away: these requests fail, later ones retry
            log.exception("storing %d SMS replies failed", len(batch))
            raise

    async def close(self, _app: web.Application | None = None) -> None:
        """Stop the reply-log writer (after the last request was answered)."""
        await self._log.stop()

    async def _command(self, name: str, phone: str) -> str:
        max_chars = self.sms.reply_max_chars
        if name == "confirm":
            return await self._confirm(phone)
        if name == "stop":
            await opt_out(self.engine, phone, self.clock())
            return UNSUBSCRIBED
        if name == "remind":
            await opt_in(self.engine, phone)
            return SUBSCRIBED
        if name == "correct":
            return SEND_CORRECTED
        return render_help(max_chars)  # "help", and what SMS cannot do ("/start", "история")

    async def _confirm(self, phone: str) -> str:
        """ "ДА": the sender vouches for their latest reading that waits for confirmation."""
        receipt = await receipt_awaiting_yes(self.engine, phone)
        if receipt is None:
            return NOTHING_TO_CONFIRM
        try:
            verdict = await held.confirm(
                self.engine, self.config, receipt, f"resident {mask_phone(phone)}", self.clock()
            )
        except held.NotHeld:
            return NOTHING_TO_CONFIRM
        if verdict.status is not Status.NEEDS_CONFIRMATION:
            await mark_answered(self.engine, receipt, verdict.status.value)
        return render_verdict(verdict, self.sms.reply_max_chars)


SMS_INBOX = web.AppKey("sms_inbox", SmsInbox)


def inbox_of(host: Host, app: web.Application) -> SmsInbox:
    """The application's SMS inbox, shared by every SMS route installed on it."""
    inbox = app.get(SMS_INBOX)
    if inbox is None:
        inbox = app[SMS_INBOX] = SmsInbox(host)
        app.on_cleanup.append(inbox.close)
    return inbox
