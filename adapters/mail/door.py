"""The mail door in `meter-gateway run`: with `[mail] enabled`, a background task keeps one IMAP
connection to the readings mailbox, hands each new message to the inbox (inbox.py) and flags it
when done, then waits (IDLE) for the next; /healthz shows it under `mail`, /metrics counts its
messages and answers (verdicts are the core's `gateway_verdicts_total{channel="mail"}`).

A server that goes away is reconnected with growing pauses (`reconnect_initial_seconds`,
doubling up to `reconnect_max_seconds`); a message whose answer surely did not go stays
unflagged and is taken up again after `retry_seconds`; a store that fails leaves the message
unflagged too, so nothing is lost while the database is away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import Gauge
from sqlalchemy.exc import SQLAlchemyError

from adapters.mail.config import MailConfig
from adapters.mail.inbox import MailInbox, MailMetrics
from adapters.mail.mailbox import ImapFailed, Mailbox, MailboxError
from adapters.mail.message import read_message
from gateway.host import Host

log = logging.getLogger(__name__)


@dataclass
class MailStatus:
    """What /healthz shows of the door."""

    connected: bool = False
    idle: bool = False
    messages: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    waiting: int = 0  # messages left for a later try (their answer did not go, or the store failed)
    last_message_at: float | None = None
    last_connected_at: float | None = None
    last_error: str | None = None
    reconnects: int = 0


class MailDoor:
    """Reads the readings mailbox for as long as the gateway runs."""

    def __init__(self, host: Host, config: MailConfig) -> None:
        self.host = host
        self.config = config
        self.status = MailStatus()
        metrics = MailMetrics(host.metrics.registry)
        self.connected = Gauge(
            "gateway_mail_connected",
            "1 while the readings mailbox is connected",
            registry=host.metrics.registry,
        )
        self.inbox = MailInbox(host, config, metrics)

    async def run(self, _host: Host) -> None:
        pause = self.config.reconnect_initial_seconds
        while True:
            mailbox = Mailbox(self.config)
            try:
                await mailbox.connect()
                self.status.connected, self.status.idle = True, mailbox.idles
                self.status.last_connected_at = time.time()
                self.connected.set(1)
                pause = self.config.reconnect_initial_seconds
                log.info(
                    "mail: %s@%s/%s connected",
                    self.config.imap_user,
                    self.config.imap_host,
                    self.config.mailbox,
                )
                while True:
                    seen, left = await self.round(mailbox)
                    if seen > left or mailbox.told_of_mail:
                        # A letter that came while these were handled, or during the search, is
                        # told of in the answer to one of our commands, not pushed once we idle:
                        # it would wait a whole idle_seconds. So look again; IDLE follows only a
                        # search that found none with no news since.
                        continue
                    wait = self.config.idle_seconds if mailbox.idles else self.config.poll_seconds
                    await mailbox.wait(min(wait, self.config.retry_seconds) if left else wait)
            except (*MailboxError, ImapFailed, SQLAlchemyError) as exc:
                self.status.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("mail: %s; again in %.0f s", self.status.last_error, pause)
            finally:
                self.status.connected = False
                self.connected.set(0)
                await mailbox.close()
            self.status.reconnects += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.config.reconnect_max_seconds)

    async def round(self, mailbox: Mailbox) -> tuple[int, int]:
        """Handle every message not handled yet; returns how many were found and how many of
        them are left for a later try."""
        left = 0
        found = await mailbox.pending()
        for uid, size in found:
            whole = size <= self.config.max_message_bytes
            data = await mailbox.fetch(uid, header_only=not whole)
            mail = read_message(
                data, self.config.address, self.config.max_parts, self.config.authserv_id, whole=whole
            )
            handling = await self.inbox.handle(mail)
            self.status.messages += 1
            self.status.by_kind[handling.kind] = self.status.by_kind.get(handling.kind, 0) + 1
            self.status.last_message_at = time.time()
            if handling.done:
                await mailbox.done(uid)
            else:
                left += 1
        self.status.waiting = left
        return len(found), left

    def health(self) -> dict[str, Any]:
        s, cfg = self.status, self.config
        return {
            "status": "ok" if s.connected else "degraded",
            "connected": s.connected,
            "server": f"{cfg.imap_host}:{cfg.imap_port}",
            "mailbox": cfg.mailbox,
            "idle": s.idle,
            "messages": s.messages,
            "by_kind": dict(s.by_kind),
            "waiting": s.waiting,
            "last_message_at": s.last_message_at,
            "last_connected_at": s.last_connected_at,
            "last_error": s.last_error,
            "reconnects": s.reconnects,
            "answers": "log" if cfg.answers_to_log else f"{cfg.smtp_host}:{cfg.smtp_port}",
        }


def install(host: Host, app: web.Application) -> None:
    """With `[mail] enabled`: read the mailbox in the background and report in /healthz."""
    config = host.config.section("mail", MailConfig)
    if not config.enabled:
        host.health_probes["mail"] = lambda: {"status": "disabled"}
        return
    door = MailDoor(host, config)
    host.background.append(door.run)
    host.health_probes["mail"] = door.health
