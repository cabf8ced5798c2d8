"""What the mail door does with one message of the readings mailbox, read (message.MailIn).

1. A message handled before (same key: its Message-ID) is not decided or answered again; an
   answer of it that surely did not go is sent now (up to `tables.MAX_ATTEMPTS` tries).
2. Automatic mail, bounces and loops are recorded and never answered, nor read as readings.
3. «ДА» confirms the reading the answer it replies to asked about (or the sender's latest one
   that waits); «помощь» and other commands get the help. Everything else is a reading: the
   body, else the subject (or the two together), parsed once with the enabled text formats
   (gateway/formats.py) and handed to the intake with its parse, channel `mail`, the message's
   key as the channel message id. A message too large to read is stored as refused
   (`format_too_long`) and its sender told why.
4. The answer is recorded (claimed) after the intake has stored the reading and before it is
   sent: stored before answered, answered once, within the sender's hourly reply budget.

The sender is the From address when the mail server vouched for it (`[mail] authserv_id`),
else anonymous (gateway.senders.ANONYMOUS), which the core treats as not verified for any account.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prometheus_client import Counter

from adapters.mail import tables
from adapters.mail.config import MailConfig
from adapters.mail.message import MailIn
from adapters.mail.outbox import NotSent, Smtp, answer, new_message_id
from adapters.mail.texts import help_text, nothing_to_confirm, subject_for, verdict_text
from gateway import held
from gateway.grammar import Command, ParsedReading, parse_message
from gateway.grammar_failures import ParseFailure, too_long
from gateway.host import Host
from gateway.model import Channel, Status, Submission, Verdict
from gateway.privacy import mask_email
from gateway.senders import ANONYMOUS

log = logging.getLogger(__name__)


class MailMetrics:
    """Counters in the gateway's Prometheus registry."""

    def __init__(self, registry: object) -> None:
        self.messages = Counter(
            "gateway_mail_messages_total",
            "Messages of the readings mailbox by kind: reading, confirm, help, automatic, repeated",
            ["kind"],
            registry=registry,  # type: ignore[arg-type]
        )
        self.answers = Counter(
            "gateway_mail_answers_total",
            "Answers by outcome: sent, failed (tried again), refused, unsure, withheld (over the budget)",
            ["outcome"],
            registry=registry,  # type: ignore[arg-type]
        )


@dataclass(slots=True)
class Handling:
    """What became of one message: done with it (flag it in the mailbox), or to be tried again."""

    done: bool
    kind: str


class MailInbox:
    """Decides and answers the messages of the readings mailbox."""

    def __init__(self, host: Host, config: MailConfig, metrics: MailMetrics) -> None:
        self.host = host
        self.engine = host.engine
        self.config = config
        self.formats = host.config.text_formats.formats()
        self.smtp = Smtp(config)
        self.metrics = metrics

    async def handle(self, mail: MailIn) -> Handling:
        before = await tables.handled(self.engine, mail.key)
        if before is not None:
            if before.state == "failed" and before.attempts < tables.MAX_ATTEMPTS:
                if await tables.reclaim(self.engine, before.id):
                    return Handling(await self._send(before, mail), before.kind)
            self.metrics.messages.labels("repeated").inc()
            return Handling(True, "repeated")
        now = self.host.clock()
        if mail.automatic or not mail.sender:
            kind = "automatic"
            await tables.claim(self.engine, tables.ToRecord(mail.key, mail.sender, now, kind, ""), 1)
            log.info(
                "mail %s (%s): not answered", mail.automatic or "without a sender", mask_email(mail.sender)
            )
            self.metrics.messages.labels(kind).inc()
            return Handling(True, kind)
        parsed, text = self._read(mail)
        verdict: Verdict | None = None
        if isinstance(parsed, Command):
            kind = "confirm" if parsed.name == "confirm" else "help"
            if kind == "confirm":
                verdict = await self._confirm(mail)
                reply = verdict_text(verdict, confirmed=True) if verdict else nothing_to_confirm()
            else:
                reply = help_text()
        else:
            kind = "reading"
            verdict = await self.host.intake.submit(
                Submission(
                    channel=Channel.MAIL,
                    received_at=now,
                    sender=mail.sender if mail.authenticated else ANONYMOUS,
                    text=text,
                    reading=parsed,
                    channel_message_id=mail.key,
                    raw=mail.summary,
                )
            )
            reply = verdict_text(verdict, too_large=mail.too_large)
        self.metrics.messages.labels(kind).inc()
        reply_id = new_message_id(self.config)
        row = await tables.claim(
            self.engine,
            tables.ToRecord(
                mail.key,
                mail.sender,
                now,
                kind,
                reply,
                reply_id,
                verdict.receipt if verdict and kind == "reading" else None,
                verdict.status.value if verdict and kind == "reading" else None,
            ),
            self.config.replies_per_hour,
        )
        if row is None:  # another process claimed it between our look and our insert
            return Handling(True, "repeated")
        if row.state == "withheld":
            self.metrics.answers.labels("withheld").inc()
            log.info("mail from %s: answer withheld (reply budget)", mask_email(mail.sender))
            return Handling(True, kind)
        return Handling(await self._send(row, mail, verdict), kind)

    def _read(self, mail: MailIn) -> tuple[ParsedReading | ParseFailure | Command, str]:
        """The one parse of the message: the first of its texts that reads as a reading or a
        command; else the failure of the first (a message too large is not read at all)."""
        if mail.too_large:
            return too_long(self.formats.example), ""
        texts = mail.texts()
        first: tuple[ParsedReading | ParseFailure | Command, str] | None = None
        for text in texts:
            parsed = parse_message(text, self.formats)
            if not isinstance(parsed, ParseFailure):
                return parsed, text
            first = first or (parsed, text)
        return first or (parse_message("", self.formats), "")

    async def _confirm(self, mail: MailIn) -> Verdict | None:
        """«ДА»: the reading the answer replied to (or the sender's latest that waits) confirmed."""
        if not mail.authenticated:
            return None
        receipt = await tables.awaiting_confirmation(self.engine, mail.sender, mail.references)
        if receipt is None:
            return None
        try:
            verdict = await held.confirm(
                self.engine,
                self.host.config,
                receipt,
                f"resident mail:{mask_email(mail.sender)}",
                self.host.clock(),
            )
        except held.NotHeld:
            return None
        if verdict.status is not Status.NEEDS_CONFIRMATION:
            await tables.mark_decided(self.engine, receipt, verdict.status.value)
        return verdict

    async def _send(self, row: tables.Handled, mail: MailIn, verdict: Verdict | None = None) -> bool:
        """Send a claimed answer; True when done with the message (sent, or never to be)."""
        letter = answer(
            self.config,
            mail,
            subject_for(verdict, mail.subject),
            row.reply,
            row.reply_id or new_message_id(self.config),
            self.host.clock(),
        )
        try:
            await self.smtp.send(letter)
        except NotSent as exc:
            state = exc.state
            if state == "failed" and row.attempts + 1 >= tables.MAX_ATTEMPTS:
                state = "refused"  # given up: it will not be tried again
            await tables.settle(self.engine, row.id, state, str(exc)[:500])
            self.metrics.answers.labels(state).inc()
            log.warning("mail answer to %s not sent (%s): %s", mask_email(mail.sender), state, exc)
            return state != "failed"
        await tables.settle(self.engine, row.id, "sent")
        self.metrics.answers.labels("sent").inc()
        return True
