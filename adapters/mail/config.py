"""`[mail]`: the readings mailbox (IMAP) and the server answers go through (SMTP), declared to the
core as the `mail` section (pyproject.toml, `meter_gateway.config`)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, model_validator

from gateway.section import Section


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MailConfig(Section):
    """`[mail]`: readings by e-mail: the mailbox read over IMAP, answers sent by SMTP (adapters/mail/)."""

    enabled: bool = False
    """Read the readings mailbox and answer by e-mail."""
    address: str = Field("", max_length=254)
    """The mailbox's own address: the From of every answer (mail from it is a loop, never answered)."""
    sender_name: str = Field("Приём показаний", max_length=80)
    """The name answers are signed with in their From."""
    imap_host: str = "127.0.0.1"
    """The IMAP server of the readings mailbox."""
    imap_port: int = Field(993, ge=1, le=65535)
    """Its port (993: IMAP over TLS; 143: plain)."""
    imap_tls: bool = True
    """IMAP over TLS; plain IMAP (the password in clear) only to a server on loopback."""
    imap_user: str = ""
    """Login of the readings mailbox."""
    imap_password: str = ""
    """Its password."""
    mailbox: str = Field("INBOX", min_length=1, max_length=200)
    """The folder readings arrive in."""
    idle_seconds: float = Field(600.0, ge=5, le=1740)
    """How long one IMAP IDLE waits for new mail before it is renewed (servers end it after 30 min)."""
    poll_seconds: float = Field(60.0, ge=1, le=3600)
    """How often to look for new mail on a server without IDLE."""
    smtp_host: str = ""
    """The SMTP server answers are sent through."""
    smtp_port: int = Field(587, ge=1, le=65535)
    """Its port (587: submission with STARTTLS; 465: SMTP over TLS; 25: a local relay)."""
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    """starttls, tls, or none (only to a server on loopback)."""
    smtp_user: str = ""
    """Login at the SMTP server; empty: none."""
    smtp_password: str = ""
    """Its password."""
    timeout_seconds: float = Field(30.0, gt=0, le=300)
    """How long one IMAP command or one SMTP delivery may take."""
    retry_seconds: float = Field(60.0, ge=1, le=3600)
    """An answer that surely did not go (SMTP down) is tried again after this, up to 5 times."""
    reconnect_initial_seconds: float = Field(1.0, gt=0)
    """IMAP server gone: retry after this, doubling..."""
    reconnect_max_seconds: float = Field(60.0, gt=0)
    """...up to this."""
    max_message_bytes: int = Field(10 * 1024 * 1024, ge=10 * 1024, le=100 * 1024 * 1024)
    """A larger message is not read (only its header): its sender is asked to send the reading as text."""
    max_parts: int = Field(50, ge=1, le=1000)
    """A message of more MIME parts is not read, as one too large."""
    replies_per_hour: int = Field(10, ge=1)
    """Answers per sender address per hour; over it the reading is kept, the answer not sent."""
    authserv_id: str = Field("", max_length=253)
    """Set: a From counts only when this receiving server's Authentication-Results passes it (DMARC/DKIM/SPF)."""
    answers_to_log: bool = False
    """Write answers to the log instead of sending them (the demo; never in production)."""

    @model_validator(mode="after")
    def _usable(self) -> MailConfig:
        if not self.enabled:
            return self
        if "@" not in self.address:
            raise ValueError("address must be the mailbox's own e-mail address when enabled")
        if not self.imap_user:
            raise ValueError("imap_user must be set when enabled")
        if not self.smtp_host and not self.answers_to_log:
            raise ValueError("smtp_host must be set when enabled (answers go through it)")
        if not self.imap_tls and not _loopback(self.imap_host):
            raise ValueError("imap_tls = false sends the password in clear: only to a server on loopback")
        if self.smtp_host and self.smtp_security == "none" and not _loopback(self.smtp_host):
            raise ValueError('smtp_security = "none" only to a server on loopback')
        if self.reconnect_max_seconds < self.reconnect_initial_seconds:
            raise ValueError("reconnect_max_seconds must not be less than reconnect_initial_seconds")
        return self
