"""Real mail servers on loopback for the mail door's tests: a private Dovecot (adapters/mail/
dovecot.py, one per test session; each test reads a folder of its own) holding the readings
mailbox, and aiosmtpd, a real SMTP server, receiving the answers.

Residents' letters are dropped into the mailbox with IMAP APPEND (the standard library's
imaplib), as a mail server's delivery would put them there.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import imaplib
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from adapters.mail.dovecot import PrivateDovecot, dovecot_binary, free_port

USER, PASSWORD = "readings", "rig-password"
ADDRESS = "readings@retailer.test"


@pytest.fixture(scope="session")
def dovecot() -> Iterator[PrivateDovecot]:
    """The session's Dovecot; its folder is outside pytest's (root-only) temporary folders, since
    under root Dovecot's own unprivileged users must reach it."""
    if dovecot_binary() is None:
        pytest.fail("dovecot is not installed (scripts/system-deps.sh installs dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="mg-dovecot-"))
    server = PrivateDovecot(root, {USER: PASSWORD})
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def imap(server: PrivateDovecot) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.port)
    client.login(USER, PASSWORD)
    return client


def new_folder(server: PrivateDovecot) -> str:
    """A folder of its own for one test: the door reads it as its mailbox."""
    name = f"t{uuid.uuid4().hex[:10]}"
    client = imap(server)
    try:
        assert client.create(name)[0] == "OK"
    finally:
        client.logout()
    return name


def deliver(server: PrivateDovecot, folder: str, letter: EmailMessage | bytes) -> None:
    data = letter if isinstance(letter, bytes) else letter.as_bytes()
    client = imap(server)
    try:
        status, _ = client.append(folder, None, None, data)
        assert status == "OK"
    finally:
        client.logout()


def flagged(server: PrivateDovecot, folder: str) -> int:
    """How many messages of the folder the door is done with."""
    client = imap(server)
    try:
        client.select(folder)
        _, found = client.uid("SEARCH", "KEYWORD", "$MeterGateway")
        return len(found[0].split())
    finally:
        client.logout()


def letter(
    sender: str,
    body: str = "",
    subject: str = "Показания",
    html: str | None = None,
    message_id: str | None = None,
    **headers: str,
) -> EmailMessage:
    """A resident's letter (`html`: an HTML alternative, or the only body when `body` is empty)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ADDRESS
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@example.ru>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    if body:
        msg.set_content(body)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    else:
        msg.set_content(html or "", subtype="html")
    return msg


@dataclass
class SmtpSink:
    """aiosmtpd on a free port of loopback, keeping every letter it accepts."""

    port: int = 0
    received: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(parsed)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"

    def start(self) -> None:
        self.port = self.port or free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.received if m["To"] == address]


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 10.0) -> Any:
    """Poll until `check` returns something truthy; fail with its last answer otherwise."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            assert result, f"gave up waiting; last answer {result!r}"
            return result
        await asyncio.sleep(0.05)


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None and isinstance(body, EmailMessage)
    return str(body.get_content())
