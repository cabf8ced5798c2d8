"""Answers as e-mail: the letter threaded to the resident's message, and its delivery by SMTP
(aiosmtplib), saying whether a failed one surely did not go.

The answer goes to the message's From address, with `In-Reply-To` and `References` so mail
clients show it under the resident's message, `Auto-Submitted: auto-replied` (RFC 3834) so other
robots do not answer it, and the door's marker header, so an answer that comes back into the
readings mailbox (a forward, a misconfigured alias) is recognised as a loop. The envelope sender
is the mailbox's own address: a bounce of an answer comes back there and is recognised as one.
"""

from __future__ import annotations

import logging
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

import aiosmtplib

from adapters.mail.config import MailConfig
from adapters.mail.message import MARKER, MailIn
from gateway.privacy import mask_email

log = logging.getLogger(__name__)


class NotSent(Exception):
    """An answer that did not (surely) reach the SMTP server's queue."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state  # "failed" (surely not sent: try again), "refused" (for good), "unsure"


def new_message_id(config: MailConfig) -> str:
    return make_msgid(domain=config.address.rpartition("@")[2] or None)


def answer(
    config: MailConfig, mail: MailIn, subject: str, text: str, message_id: str, now: datetime
) -> EmailMessage:
    """The letter answering `mail`."""
    letter = EmailMessage()
    letter["From"] = formataddr((config.sender_name, config.address))
    letter["To"] = mail.sender
    letter["Subject"] = subject
    letter["Date"] = format_datetime(now)
    letter["Message-ID"] = message_id
    if mail.message_id:
        letter["In-Reply-To"] = mail.message_id
    references = [*mail.references, *([mail.message_id] if mail.message_id else [])]
    if references:
        letter["References"] = " ".join(references[-10:])
    letter["Auto-Submitted"] = "auto-replied"
    letter["X-Auto-Response-Suppress"] = "All"
    letter[MARKER] = "answer"
    letter.set_content(text)
    return letter


class Smtp:
    """Sends answers through `[mail] smtp_host` (or, in the demo, writes them to the log)."""

    def __init__(self, config: MailConfig) -> None:
        self.config = config

    async def send(self, letter: EmailMessage) -> None:
        """Hand one letter over; NotSent says whether it may be tried again."""
        cfg = self.config
        if cfg.answers_to_log:
            log.warning(
                "mail.answers_to_log: to %s: %s\n%s", letter["To"], letter["Subject"], letter.get_content()
            )
            return
        client = aiosmtplib.SMTP(
            hostname=cfg.smtp_host,
            port=cfg.smtp_port,
            username=cfg.smtp_user or None,
            password=cfg.smtp_password or None,
            use_tls=cfg.smtp_security == "tls",
            start_tls=cfg.smtp_security == "starttls",
            timeout=cfg.timeout_seconds,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:  # nothing was handed over yet
            raise NotSent(f"SMTP {cfg.smtp_host}:{cfg.smtp_port} not reached: {exc!r}", "failed") from exc
        try:
            await client.send_message(letter, sender=cfg.address, recipients=[str(letter["To"])])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise NotSent(f"recipient refused: {exc!r}", "refused") from exc
        except aiosmtplib.SMTPResponseException as exc:  # the server said no: 4xx for now, 5xx for good
            raise NotSent(
                f"SMTP answered {exc.code}: {exc.message}", "failed" if exc.code < 500 else "refused"
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:  # cut off mid-way: it may have been queued
            raise NotSent(f"SMTP connection lost: {exc!r}", "unsure") from exc
        finally:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
        log.info("mail answer sent to %s", mask_email(str(letter["To"])))
