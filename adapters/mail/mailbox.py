"""The readings mailbox over IMAP (aioimaplib): the messages not yet handled, each fetched once,
and a keyword set on each when the door is done with it; IDLE waits for new mail where the
server offers it, a pause where it does not.

A message is handled when it does not carry the keyword `$MeterGateway` (the door's own flag,
so a person reading the mailbox in a mail client, who sets and clears \\Seen, changes nothing).
Its size is asked first: a message over `max_message_bytes` is fetched by its header only.
Fetches use BODY.PEEK, so nothing but the door's keyword (and \\Seen with it) is changed.
"""

from __future__ import annotations

import asyncio
import re
import ssl

import aioimaplib

from adapters.mail.config import MailConfig

DONE = "$MeterGateway"
_SIZE = re.compile(rb"UID (\d+) RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+) UID (\d+)")
MAX_BATCH = 200  # messages looked at per round: a flood waits for the next round, memory stays flat
_NEW_MAIL = re.compile(rb"^\*\s+\d+\s+EXISTS\b", re.IGNORECASE)

MailboxError = (aioimaplib.AioImapException, OSError, asyncio.TimeoutError)


class ImapFailed(Exception):
    """The server said NO or BAD, or the connection is gone."""


class Mailbox:
    """One logged-in IMAP connection with the readings folder selected."""

    def __init__(self, config: MailConfig) -> None:
        self.config = config
        self._client: aioimaplib.IMAP4 | None = None
        self._lost = asyncio.Event()
        self.told_of_mail = False  # the server said "N EXISTS" since the last search (see connect)

    @property
    def client(self) -> aioimaplib.IMAP4:
        if self._client is None:
            raise ImapFailed("not connected")
        return self._client

    async def connect(self) -> None:
        cfg = self.config
        self._lost.clear()
        if cfg.imap_tls:
            self._client = aioimaplib.IMAP4_SSL(
                cfg.imap_host,
                cfg.imap_port,
                timeout=cfg.timeout_seconds,
                ssl_context=ssl.create_default_context(),
            )
        else:
            self._client = aioimaplib.IMAP4(cfg.imap_host, cfg.imap_port, timeout=cfg.timeout_seconds)
        # told when the server goes away, so an IDLE does not wait for its time-out to notice
        self._client.protocol.conn_lost_cb = self._on_lost
        # A server tells of new mail in the answer to whatever command is running when it comes
        # (Dovecot: at the end of a SEARCH or STORE), and only once. aioimaplib drops such a line
        # ("ignored untagged response") when the command is one of its asynchronous ones, and the
        # door would then idle, not told again, until idle_seconds. The line is noted here.
        untagged = self._client.protocol._untagged_response

        def noting(line: bytes) -> object:
            if _NEW_MAIL.match(line):
                self.told_of_mail = True
            return untagged(line)

        self._client.protocol._untagged_response = noting  # type: ignore[method-assign]
        await self.client.wait_hello_from_server()
        self._check(await self.client.login(cfg.imap_user, cfg.imap_password), "LOGIN")
        self._check(await self.client.select(cfg.mailbox), f"SELECT {cfg.mailbox}")

    def _on_lost(self, _exc: Exception | None) -> None:
        self._lost.set()

    @property
    def idles(self) -> bool:
        return self._client is not None and self._client.has_capability("IDLE")

    @staticmethod
    def _check(response: aioimaplib.Response, what: str) -> aioimaplib.Response:
        if response.result != "OK":
            last = response.lines[-1] if response.lines else b""
            raise ImapFailed(f"{what}: {response.result} {bytes(last)[:200]!r}")
        return response

    async def pending(self) -> list[tuple[int, int]]:
        """(uid, size) of the messages not handled yet, oldest first, at most MAX_BATCH."""
        self.told_of_mail = False  # what this search finds, it finds; later news is noted anew
        found = self._check(await self.client.uid_search("UNKEYWORD", DONE, charset=None), "SEARCH")
        uids = sorted(int(u) for line in found.lines[:-1] for u in bytes(line).split() if u.isdigit())
        uids = uids[:MAX_BATCH]
        if not uids:
            return []
        sizes = self._check(
            await self.client.uid("fetch", ",".join(map(str, uids)), "(UID RFC822.SIZE)"), "FETCH sizes"
        )
        out: dict[int, int] = {}
        for line in sizes.lines:
            for m in _SIZE.finditer(bytes(line)):
                uid, size = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
                out[int(uid)] = int(size)
        return sorted(out.items())

    async def fetch(self, uid: int, header_only: bool) -> bytes:
        """The message (or only its header), not marking it read."""
        part = "BODY.PEEK[HEADER]" if header_only else "BODY.PEEK[]"
        found = self._check(await self.client.uid("fetch", str(uid), f"({part})"), f"FETCH {uid}")
        literals = [bytes(line) for line in found.lines if isinstance(line, bytearray)]
        if not literals:
            raise ImapFailed(f"FETCH {uid}: no message in the answer")
        return literals[0]

    async def done(self, uid: int) -> None:
        """The door is done with the message: it is not handled again."""
        self._check(
            await self.client.uid("store", str(uid), "+FLAGS.SILENT", f"({DONE} \\Seen)"), f"STORE {uid}"
        )

    async def wait(self, seconds: float) -> None:
        """Until new mail may have come: IDLE up to `seconds` (returns at the server's first word),
        or a plain pause on a server without IDLE."""
        if not self.idles:
            await asyncio.sleep(seconds)
            await self.client.noop()
            return
        client = self.client
        idle = await client.idle_start(timeout=seconds)
        lost = asyncio.ensure_future(self._lost.wait())
        push = asyncio.ensure_future(client.wait_server_push(timeout=seconds + self.config.timeout_seconds))
        try:
            await asyncio.wait({push, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            push.cancel()
        if self._lost.is_set():
            raise ImapFailed("connection lost while idling")
        client.idle_done()
        await asyncio.wait_for(idle, self.config.timeout_seconds)

    async def close(self) -> None:
        """Log out, or at least drop the connection (a stop must not wait on a dead server)."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if client.has_pending_idle():
                client.idle_done()
            await asyncio.wait_for(client.logout(), 2)
        except (*MailboxError, ImapFailed):
            pass
        finally:
            transport = client.protocol.transport
            if transport is not None:
                transport.close()
