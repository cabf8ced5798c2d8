"""How updates reach the channel: Telegram's webhook (`POST /channels/telegram/webhook`, the
`X-Telegram-Bot-Api-Secret-Token` header must equal `[telegram] webhook_secret`), or long
polling (`getUpdates`); and telling Telegram where to send them, with the bot's command menu.

Either way each update goes through `TelegramChannel.process` and is stored and committed
before it is acknowledged: the webhook answers 200 only after that, polling confirms it with
the next offset.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from pydantic import ValidationError

from adapters.telegram.channel import Outcome, TelegramChannel, as_int
from adapters.telegram.keys import TELEGRAM
from adapters.telegram.texts import BOT_COMMANDS
from gateway.http_api import ApiError, error_response, json_response

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_PATH = "/channels/telegram/webhook"
ALLOWED_UPDATES = ["message", "callback_query"]


async def webhook(request: web.Request) -> web.Response:
    """Telegram's webhook: 200 once the update is stored and handled (or recognised as seen)."""
    tg = request.app[TELEGRAM]
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), tg.settings.webhook_secret.encode()):
        raise ApiError(401, "unauthorized", f"{SECRET_HEADER} is missing or wrong")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "body_too_large", "the update is too large") from None
    try:
        update = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(update, dict) or as_int(update.get("update_id")) is None:
        raise ApiError(400, "bad_update", "the body must be a Telegram Update with an integer update_id")
    try:
        outcome = await tg.process(update, body.decode("utf-8", errors="replace"))
    except ValidationError as exc:
        # It came with the secret and an update_id, so from Telegram: a shape aiogram cannot read
        # (a newer Bot API). Acknowledged, or Telegram would hold back every later update for it.
        tg.ignored += 1
        log.warning(
            "telegram update %s is not a Telegram Update aiogram can read (%s); ignored",
            update["update_id"],
            exc.errors()[0]["msg"],
        )
        return json_response({"ok": True, "outcome": "ignored"})
    if outcome == "retry":  # not acknowledged: Telegram delivers it again
        return error_response(503, "retry_later", "the update could not be handled yet; it is stored")
    return json_response({"ok": True, "outcome": outcome})


async def register_webhook(tg: TelegramChannel) -> None:
    """Webhook mode: tell Telegram where to send updates (when `webhook_url` is set)."""
    await tg.bot.set_webhook(
        url=tg.settings.webhook_url,
        secret_token=tg.settings.webhook_secret,
        allowed_updates=ALLOWED_UPDATES,
        drop_pending_updates=False,
    )
    await tg.bot.set_my_commands(BOT_COMMANDS)
    log.info("telegram webhook registered at %s", tg.settings.webhook_url)


async def poll(tg: TelegramChannel) -> None:
    """Polling mode: getUpdates in a loop; a batch is stored and handled before the next call
    confirms it (the offset), so a crash never loses an update."""
    await tg.bot.delete_webhook(drop_pending_updates=False)
    await tg.bot.set_my_commands(BOT_COMMANDS)
    offset = await tg.store.next_offset(tg.bot.id)
    url = tg.server.api_url(tg.bot.token, "getUpdates")
    wait = tg.settings.poll_timeout_seconds
    backoff = 1.0
    async with aiohttp.ClientSession() as http:
        while True:
            body: dict[str, Any] = {"timeout": wait, "allowed_updates": ALLOWED_UPDATES}
            if offset is not None:
                body["offset"] = offset
            try:
                async with http.post(url, json=body, timeout=aiohttp.ClientTimeout(total=wait + 15)) as resp:
                    answer = orjson.loads(await resp.read())
                if not isinstance(answer, dict) or not answer.get("ok"):
                    raise RuntimeError(f"getUpdates: {str(answer)[:200]}")
                updates = answer.get("result") or []
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, RuntimeError) as exc:
                tg.polling_ok = False
                tg.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("telegram polling: %s; retrying in %.0f s", tg.last_error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            tg.polling_ok, backoff = True, 1.0
            if not updates:
                continue
            outcomes = await asyncio.gather(*(_polled(tg, u) for u in updates))
            retry = [u["update_id"] for u, o in zip(updates, outcomes, strict=True) if o == "retry"]
            if retry:
                offset = min(retry)  # fetched again; those handled meanwhile are recognised
                await asyncio.sleep(1.0)
            else:
                # An item without an integer update_id is skipped, never the loop's end.
                ids = [
                    u["update_id"]
                    for u in updates
                    if isinstance(u, dict) and as_int(u.get("update_id")) is not None
                ]
                offset = max(ids) + 1 if ids else offset


async def _polled(tg: TelegramChannel, update: Any) -> Outcome:
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        return "failed"
    try:
        return await tg.process(update, orjson.dumps(update).decode())
    except ValidationError:
        log.warning("telegram polling: update %s is not a valid Update; skipped", update.get("update_id"))
        return "failed"
