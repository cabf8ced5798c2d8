"""Twilio-compatible inbound SMS webhooks: `POST /channels/sms/twilio`.

The aggregator posts a form (`MessageSid`, `From`, `To`, `Body`, ...) signed in the
`X-Twilio-Signature` header: base64 of HMAC-SHA1, keyed with the account's auth token
(`[sms] twilio_auth_token`), over the webhook URL followed by every posted parameter's name and
value, sorted by name. The URL is the one configured at the aggregator; behind a proxy that
rewrites it, set `[sms] twilio_webhook_url` to it. A request without a valid signature gets 403.

The answer is TwiML: `<Response><Message>reply</Message></Response>`, or an empty `<Response/>`
when nothing is to be sent. `MessageSid` identifies the message: a retry gets the same reply and
never makes a second reading.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from xml.sax.saxutils import escape

import orjson
from aiohttp import web
from yarl import URL

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
from gateway.host import Host
from gateway.http_api import ApiError

ROUTE = "twilio"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The X-Twilio-Signature a request to `url` with these form parameters carries."""
    data = url + "".join(k + v for k, v in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _url_variants(url: str) -> list[str]:
    """The URL as given, with and without its default port: signers differ on that."""
    out = [url]
    try:
        parsed = URL(url)
    except ValueError:
        return out
    default = _DEFAULT_PORTS.get(parsed.scheme)
    if default is None or parsed.host is None:
        return out
    explicit = parsed.explicit_port
    if explicit == default:
        out.append(str(parsed.with_port(None)))
    elif explicit is None:
        out.append(str(parsed.with_port(default)))
    return out


def signature_valid(auth_token: str, url: str, params: list[tuple[str, str]], signature: str) -> bool:
    """Whether `signature` is the aggregator's for this URL and these parameters."""
    if not signature:
        return False
    given = signature.strip().encode()
    return any(
        hmac.compare_digest(twilio_signature(auth_token, variant, params).encode(), given)
        for variant in _url_variants(url)
    )


def twiml(reply: str) -> str:
    """The TwiML answer: one message back to the sender, or none."""
    head = '<?xml version="1.0" encoding="UTF-8"?>'
    if not reply:
        return head + "<Response/>"
    return f"{head}<Response><Message>{escape(reply)}</Message></Response>"


async def twilio_inbound(request: web.Request) -> web.Response:
    """One inbound SMS from a Twilio-compatible aggregator."""
    inbox = request.app[SMS_INBOX]
    config = inbox.sms
    if request.content_type != "application/x-www-form-urlencoded":
        raise ApiError(415, "unsupported_media_type", "expected an application/x-www-form-urlencoded form")
    form = await request.post()
    params = [(k, v) for k, v in form.items() if isinstance(v, str)]
    url = config.twilio_webhook_url or str(request.url)
    if not signature_valid(
        config.twilio_auth_token, url, params, request.headers.get("X-Twilio-Signature", "")
    ):
        raise ApiError(403, "forbidden", "X-Twilio-Signature does not match this URL and body")
    values = dict(params)
    sid = values.get("MessageSid") or values.get("SmsSid") or ""
    sender = values.get("From", "").strip()
    if not sid or not sender:
        raise ApiError(400, "bad_request", "MessageSid and From are required")
    sid = bounded_field(sid, "MessageSid", MAX_MESSAGE_ID)
    sender = bounded_field(sender, "From", MAX_PHONE)
    body = bounded_text(values.get("Body", ""), "Body")
    raw = {k: values[k] for k in ("MessageSid", "AccountSid", "From", "To", "Body") if k in values}
    reply = await inbox.handle(InboundSms(ROUTE, sid, sender, body, orjson.dumps(raw).decode()))
    return web.Response(text=twiml(reply), content_type="text/xml", charset="utf-8")


def install(host: Host, app: web.Application) -> None:
    """The webhook when `[sms] twilio_auth_token` is set."""
    if not host.config.section("sms", SmsConfig).twilio_auth_token:
        return
    inbox_of(host, app)
    app.router.add_post("/channels/sms/twilio", twilio_inbound)
