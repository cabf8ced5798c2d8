"""What `meter-gateway demo` adds for e-mail: when Dovecot is installed, a private Dovecot IMAP
server on loopback holding the readings mailbox (adapters/mail/dovecot.py, its folder under
var/), the door reading it, and answers written to the log (there is no mail server to send them
through); without Dovecot, how to get it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from adapters.mail.config import MailConfig
from adapters.mail.dovecot import PrivateDovecot, dovecot_binary
from gateway.plugins import DemoPart

DEMO_IMAP_PORT = 14143
DEMO_USER, DEMO_PASSWORD = "readings", "demo-mail"
DEMO_DIR = Path("var/demo-mail")


async def serve_demo_dovecot(_gateway: Any) -> None:
    """Run the demo's Dovecot for as long as the demo runs."""
    server = PrivateDovecot(DEMO_DIR, {DEMO_USER: DEMO_PASSWORD}, DEMO_IMAP_PORT)
    await asyncio.to_thread(server.start)
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.to_thread(server.stop)


def demo_config(config: Any) -> DemoPart:
    mail = config.section("mail", MailConfig)
    if mail.enabled:  # the operator's own mailbox
        return DemoPart(hints=[f"Mail: the mailbox {mail.imap_user}@{mail.imap_host} is read."])
    if dovecot_binary() is None:
        return DemoPart(
            hints=[
                "Mail: Dovecot is not installed; `apt-get install dovecot-imapd` (or `make system-deps`) "
                "and run the demo again to send readings by e-mail"
            ]
        )
    mail = mail.model_copy(
        update={
            "enabled": True,
            "address": "readings@demo.invalid",
            "imap_host": "127.0.0.1",
            "imap_port": DEMO_IMAP_PORT,
            "imap_tls": False,
            "imap_user": DEMO_USER,
            "imap_password": DEMO_PASSWORD,
            "answers_to_log": True,
            "reconnect_max_seconds": 2.0,
        }
    )
    return DemoPart(
        overrides={"mail": mail},
        background=[serve_demo_dovecot],
        hints=[
            f"Mail: a private Dovecot holds the readings mailbox on 127.0.0.1:{DEMO_IMAP_PORT} "
            f"(login {DEMO_USER}, password {DEMO_PASSWORD}); answers go to this console's log "
            "(mail.answers_to_log). Drop a resident's letter into it:",
            "  printf 'From: ivan@example.ru\\r\\nSubject: Показания\\r\\nMessage-ID: <try-1@example.ru>\\r\\n"
            "\\r\\n2000001 12345\\r\\n' > letter.eml",
            f"  curl -s imap://127.0.0.1:{DEMO_IMAP_PORT}/INBOX -u {DEMO_USER}:{DEMO_PASSWORD} -T letter.eml",
        ],
    )
