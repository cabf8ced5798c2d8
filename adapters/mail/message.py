"""One message of the readings mailbox as the door reads it: who sent it, whether it may be
answered at all, and the text the residents' grammar is to read.

Parsing is the standard library's `email` package (policy `default`). What is ours, because no
kept library does it for Russian mail clients (mail-parser-reply knows thirteen languages, not
Russian; email-reply-parser only English), is small and lives in `body.py`: the HTML body as
text and the quoted reply and signature cut off.

A message is never answered when it is automatic (RFC 3834 `Auto-Submitted`, `Precedence`
bulk/list/junk, `X-Autoreply`, mailing lists, no-reply senders), a bounce (empty `Return-Path`,
a delivery report, the mailer daemon) or a loop (from the mailbox's own address, or carrying
the marker header our answers carry). The sender is the `From` address; the answer goes to it,
never to `Reply-To`, so a message with someone else's address in `From` gets its answer to that
someone, not to whoever forged it.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr

import orjson

from adapters.mail.body import html_to_text, without_quotes
from gateway.bounds import CONTROL
from gateway.privacy import normalize_email

MARKER = "X-Meter-Gateway"  # carried by every answer: a message with it is our own, come back
MAX_KEY = 128  # inbound.channel_message_id
MAX_TEXT = 4000  # characters of the body kept for the grammar (it refuses what is much longer)
_ID = re.compile(r"<[^<>\s]{1,250}>")
_NO_REPLY = re.compile(r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounces?)([+.-].*)?$", re.I)
_REPLY_PREFIX = re.compile(r"^\s*((re|fwd?|ответ|отв|пересл)\s*(\[\d+\])?\s*:\s*)+", re.I)


@dataclass(frozen=True, slots=True)
class MailIn:
    """A message of the mailbox, read."""

    key: str  # the channel message id: its Message-ID, or sha256 of the message without one
    message_id: str | None  # "<...>" as sent, for the answer's In-Reply-To
    sender: str  # the From address, lower case ("" when there is none)
    subject: str  # without "Re:" and the like
    body: str  # the body's own words: HTML as text, quotes and signature cut off
    references: tuple[str, ...]  # In-Reply-To and References: what this message answers
    automatic: str | None  # why it is never answered: auto-reply, list, bounce, loop
    too_large: bool  # over `max_message_bytes`, or more parts than `max_parts`: not read
    authenticated: bool  # the mail server vouched for the From address (or nobody asked it to)
    summary: str  # what is stored as the raw message (inbound.payload): JSON of the above

    def texts(self) -> list[str]:
        """What the grammar is to try, in order: the body, the subject, the two together."""
        found = [t for t in (self.body, self.subject) if t]
        if self.body and self.subject:
            found.append(f"{self.subject}\n{self.body}")
        return found


def _message_key(message_id: str | None, data: bytes) -> str:
    if message_id and len(message_id) <= MAX_KEY:
        return message_id
    source = message_id.encode() if message_id else data
    return "sha256:" + hashlib.sha256(source).hexdigest()


def _header(msg: Message, name: str) -> str:
    """A header as text, or "" (a header the parser cannot read is as good as absent)."""
    try:
        value = msg.get(name)
    except (ValueError, TypeError, IndexError):
        return ""
    # Control characters go too: a NUL in From or Message-ID cannot be stored in PostgreSQL, and
    # a letter failing there would be fetched again and again, blocking the mailbox behind it.
    return "" if value is None else " ".join(CONTROL.sub(" ", str(value)).split())


def automatic_kind(msg: Message, own_address: str) -> str | None:
    """Why a message must not be answered, or None for a person's own mail."""
    sender = parseaddr(_header(msg, "From"))[1]
    if _header(msg, MARKER) or (own_address and normalize_email(sender) == normalize_email(own_address)):
        return "loop"
    if own_address and own_address.lower() in _header(msg, "X-Loop").lower():
        return "loop"
    return_path = _header(msg, "Return-Path")
    if return_path.replace(" ", "") == "<>" or msg.get_content_type() == "multipart/report":
        return "bounce"
    if _NO_REPLY.match(sender.partition("@")[0]):
        return "bounce" if sender.lower().startswith(("mailer-daemon", "postmaster")) else "auto-reply"
    auto = _header(msg, "Auto-Submitted").lower()
    if auto and not auto.startswith("no"):
        return "auto-reply"
    if _header(msg, "X-Autoreply") or _header(msg, "X-Autorespond"):
        return "auto-reply"
    suppress = _header(msg, "X-Auto-Response-Suppress").lower().replace(",", " ").split()
    if {"all", "oof", "autoreply"} & set(suppress):  # Exchange marks its own automatic mail so
        return "auto-reply"
    if _header(msg, "Precedence").lower() in ("bulk", "list", "junk", "auto_reply"):
        return "list"
    if _header(msg, "List-Id") or _header(msg, "List-Unsubscribe"):
        return "list"
    return None


def authenticated(msg: Message, authserv_id: str) -> bool:
    """Whether the mail server `authserv_id` says the From address is genuine (RFC 8601
    Authentication-Results: dmarc=pass, or dkim=pass / spf=pass for the From's own domain).
    Without an `authserv_id` nobody is asked, and the From is taken as it is."""
    if not authserv_id:
        return True
    domain = parseaddr(_header(msg, "From"))[1].rpartition("@")[2].lower()
    for value in msg.get_all("Authentication-Results") or []:
        text = " ".join(str(value).split()).lower()
        server, _, results = text.partition(";")
        if server.split()[:1] != [authserv_id.lower()]:
            continue  # a result written by someone else: anyone may add such a header
        for item in results.split(";"):
            words = item.split()
            if not words or not domain:
                continue
            method = words[0]
            if method == "dmarc=pass":
                return True
            if method in ("dkim=pass", "spf=pass") and any(
                w.rpartition("=")[2].rpartition("@")[2] == domain
                for w in words[1:]
                if w.startswith(("header.d=", "header.i=", "smtp.mailfrom="))
            ):
                return True
    return False


def _parts_within(msg: Message, max_parts: int) -> bool:
    count = 0
    for _ in msg.walk():
        count += 1
        if count > max_parts:
            return False
    return True


def _body(msg: Message) -> str:
    """The first plain-text part that is not an attachment, else the first HTML one as text."""
    html: str | None = None
    for part in msg.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind not in ("text/plain", "text/html"):
            continue
        try:
            text = part.get_content() if isinstance(part, EmailMessage) else ""
        except (LookupError, ValueError, AssertionError):  # an unknown charset or a broken encoding
            payload = part.get_payload(decode=True)
            text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
        if kind == "text/plain":
            return str(text)
        if html is None:
            html = str(text)
    return html_to_text(html) if html is not None else ""


def read_message(
    data: bytes, own_address: str, max_parts: int, authserv_id: str = "", whole: bool = True
) -> MailIn:
    """Read a message as fetched (`whole` False: only its header was, for it is too large)."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    found = _ID.search(_header(msg, "Message-ID"))
    message_id = found.group(0) if found else None
    sender = normalize_email(parseaddr(_header(msg, "From"))[1])
    if "@" not in sender or len(sender) > 254:
        sender = ""
    subject = _REPLY_PREFIX.sub("", _header(msg, "Subject"))[:200]
    too_large = not whole or not _parts_within(msg, max_parts)
    body = "" if too_large else without_quotes(_body(msg)[: MAX_TEXT * 4])[:MAX_TEXT]
    references = tuple(
        dict.fromkeys(_ID.findall(_header(msg, "In-Reply-To") + " " + _header(msg, "References")))
    )[-20:]
    automatic = automatic_kind(msg, own_address)
    trusted = authenticated(msg, authserv_id)
    summary = orjson.dumps(
        {
            "message_id": message_id,
            "from": sender,
            "to": [a for _, a in getaddresses([_header(msg, "To")])][:5],
            "date": _header(msg, "Date")[:64],
            "subject": subject,
            "body": body,
            "too_large": too_large,
            "authenticated": trusted,
        }
    ).decode()
    return MailIn(
        key=_message_key(message_id, data),
        message_id=message_id,
        sender=sender,
        subject=subject,
        body=body,
        references=references,
        automatic=automatic,
        too_large=too_large,
        authenticated=trusted,
        summary=summary,
    )
