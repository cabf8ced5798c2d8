"""Kannel: residents' SMS arrive from smsbox's sms-service, replies go back in the HTTP answer.

`GET|POST /channels/sms/kannel?from=%p&to=%P&text=%a&id=%I&ts=%t&key=SECRET[&coding=%c&charset=%C]`
(deploy/kannel/kannel.conf has the matching sms-service). The answer's body is the reply SMS,
`text/plain; charset=utf-8`, with `X-Kannel-Coding: 2` whenever it holds anything outside the
GSM alphabet, so smsbox sends Cyrillic as UCS-2. An empty body means "send nothing"
(sms-service `omit-empty = true`). Kannel's %I is a UUID per message: a request Kannel repeats
after a lost answer gets the same reply and never a second reading.

The inbound text is taken as UTF-8 (smsbox `mo-recode = true` turns UCS-2 messages into UTF-8);
when the URL also carries `charset=%C` and that says UTF-16BE (a UCS-2 message not recoded) or
another character set, the raw bytes are decoded with it, so Cyrillic arrives intact either way.

Outgoing SMS go through Kannel's sendsms (`[sms] sendsms_url`): `KannelSendsms` is the door's
`Notifier` (gateway/notify.py) for the core's reminders, notices about readings and one-time codes.
"""

from __future__ import annotations

import codecs
import hmac
import logging
import uuid
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

import aiohttp
import orjson
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.sms.config import SmsConfig
from adapters.sms.inbox import (
    MAX_MESSAGE_ID,
    MAX_PHONE,
    SMS_INBOX,
    InboundSms,
    bounded_field,
    bounded_text,
    inbox_of,
)
from adapters.sms.tables import opted_out, phone_of_receipt
from adapters.sms.text import CONFIRM_REMINDER, needs_ucs2, render_reminder
from gateway.accounts import phones_of_account
from gateway.host import Host
from gateway.http_api import ApiError
from gateway.model import Channel
from gateway.notify import DueReminder, Reading, SendFailed
from gateway.privacy import mask_phone
from gateway.store.schema_reminders import phones_of_accounts

log = logging.getLogger(__name__)

ROUTE = "kannel"
_UCS2_NAMES = {"UTF-16BE", "UTF16BE", "UCS-2", "UCS2", "UTF-16", "ISO-10646-UCS-2"}


def _form(raw: bytes | str) -> dict[str, bytes]:
    """URL-encoded parameters with their values as raw bytes (the charset is decided later)."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    return {k: v.encode("latin-1") for k, v in parse_qsl(text, keep_blank_values=True, encoding="latin-1")}


def _decode(value: bytes, charset: str | None) -> str:
    """Bytes of the message text in the character set Kannel named (UTF-8 unless told otherwise)."""
    name = (charset or "").strip().upper()
    if name in _UCS2_NAMES:
        return value.decode("utf-16-be", errors="replace")
    if name and name != "UTF-8":
        try:
            codecs.lookup(name)
        except LookupError:
            name = ""
        else:
            return value.decode(name, errors="replace")
    return value.decode("utf-8", errors="replace")


async def kannel_inbound(request: web.Request) -> web.Response:
    """One MO message from smsbox; answers the reply SMS as the body."""
    params = _form(request.rel_url.raw_query_string)
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        params.update(_form(await request.read()))
    inbox = request.app[SMS_INBOX]
    key = params.get("key", b"")
    if not hmac.compare_digest(key, inbox.sms.kannel_key.encode()):
        raise ApiError(403, "forbidden", "the key parameter does not match [sms] kannel_key")
    sender = params.get("from", b"").decode("utf-8", errors="replace").strip()
    if not sender:
        raise ApiError(400, "bad_request", "from (%p, the sender's number) is required")
    sender = bounded_field(sender, "from", MAX_PHONE)
    charset = params.get("charset", b"").decode("ascii", errors="replace") or None
    text = bounded_text(_decode(params.get("text", b""), charset), "text")
    message_id = params.get("id", b"").decode("utf-8", errors="replace").strip() or f"noid-{uuid.uuid4()}"
    message_id = bounded_field(message_id, "id", MAX_MESSAGE_ID)
    raw = {
        name: (text if name == "text" else params[name].decode("utf-8", errors="replace"))
        for name in ("from", "to", "text", "id", "ts", "coding", "charset")
        if name in params
    }
    reply = await inbox.handle(InboundSms(ROUTE, message_id, sender, text, orjson.dumps(raw).decode()))
    headers = {"X-Kannel-Coding": "2"} if reply and needs_ucs2(reply) else {}
    return web.Response(text=reply, content_type="text/plain", charset="utf-8", headers=headers)


class KannelSendsms:
    """The SMS door's notifier: registered phones, through Kannel's sendsms; reminders only with
    `[sms] reminders`, "billing has it" only with `[sms] billing_notices`, at sending hours only."""

    channel = "sms"
    any_hour = False  # an SMS wakes people: 10:00-21:00 local, never on a public holiday

    def __init__(self, config: SmsConfig) -> None:
        self.reminders = config.reminders
        self.billing_notices = config.billing_notices
        self.url = config.sendsms_url
        self.timeout = aiohttp.ClientTimeout(total=config.sendsms_timeout_seconds)
        self.max_chars = config.reply_max_chars
        self._http: aiohttp.ClientSession | None = None

    async def contacts(self, engine: AsyncEngine, accounts: Mapping[int, str]) -> dict[str, list[int]]:
        """Phones of these accounts (registry), less those that answered "стоп"."""
        async with engine.connect() as conn:
            by_phone = await phones_of_accounts(conn, list(accounts))
            stopped = await opted_out(conn, list(by_phone))
        return {phone: ids for phone, ids in by_phone.items() if phone not in stopped}

    def text(self, due: DueReminder, account_numbers: list[str]) -> str:
        return render_reminder(
            due.kind, account_numbers, due.window_end, due.today, self.max_chars, due.contacts
        )

    async def recipients(self, conn: AsyncConnection, reading: Reading) -> list[str]:
        """The registered phone an SMS reading came from."""
        if reading.channel != Channel.SMS.value:
            return []
        phone = await phone_of_receipt(conn, reading.account_id, reading.receipt)
        return [phone] if phone else []

    def confirm_text(self, values: str, account: str) -> str:
        return CONFIRM_REMINDER.format(values=values, account=account)

    async def send_code(self, engine: AsyncEngine, account: str, text: str) -> bool:
        """A one-time code to every phone registered for the account."""
        sent = False
        for phone in await phones_of_account(engine, account):
            try:
                await self.send(phone, text)
                sent = True
            except SendFailed as exc:
                log.warning("sign-in code to %s not sent: %s", mask_phone(phone), exc)
        return sent

    async def send_code_to_phone(self, phone: str, text: str) -> bool:
        """A one-time code to one phone (a business customer's contact signing in)."""
        try:
            await self.send(phone, text)
            return True
        except SendFailed as exc:
            log.warning("sign-in code to %s not sent: %s", mask_phone(phone), exc)
            return False

    async def send(self, recipient: str, text: str, confirm: int | None = None) -> None:
        """Hand one SMS to Kannel (a reading is confirmed by answering ДА: no buttons);
        SendFailed says whether it surely did not go."""
        params = {"to": recipient, "text": text, "charset": "UTF-8"}
        if needs_ucs2(text):
            params["coding"] = "2"
        url = self.url + ("&" if "?" in self.url else "?") + urlencode(params)
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._http.get(url) as resp:
                body = (await resp.text(errors="replace"))[:200]
                status = resp.status
        except aiohttp.ClientConnectorError as exc:  # nothing reached Kannel
            raise SendFailed(f"sendsms unreachable: {exc}", surely_not_sent=True) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:  # the request may have been taken
            raise SendFailed(f"sendsms gave no answer: {exc!r}", surely_not_sent=False) from exc
        if status not in (200, 202):
            raise SendFailed(f"sendsms answered {status}: {body}", surely_not_sent=True)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


def install(host: Host, app: web.Application) -> None:
    """The Kannel route when `[sms] kannel_key` is set; SMS to residents (reminders, notices,
    codes) when `sendsms_url` is."""
    config = host.config.section("sms", SmsConfig)
    if config.kannel_key:
        inbox_of(host, app)
        app.router.add_get("/channels/sms/kannel", kannel_inbound, allow_head=False)
        app.router.add_post("/channels/sms/kannel", kannel_inbound)
    host.notifiers.reminder_check_seconds = config.reminder_check_seconds
    if config.sendsms_url:
        host.notifiers.add(KannelSendsms(config))
    host.health_probes["sms_kannel"] = lambda: {
        "status": "ok" if config.kannel_key or config.sendsms_url else "disabled",
        "route": bool(config.kannel_key),
        "reminders": bool(config.sendsms_url and config.reminders),
    }
