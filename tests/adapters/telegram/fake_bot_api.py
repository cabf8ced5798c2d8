"""A local Telegram Bot API server for tests and load tests: aiohttp on a free loopback port.

It implements the few methods the gateway's bot calls (getMe, sendMessage, editMessageText,
answerCallbackQuery, getUpdates, setWebhook, deleteWebhook, getWebhookInfo, setMyCommands, getFile
and the file download `/file/bot<token>/<path>` of files the test put in `files`) the
way the real server answers them (`{"ok": true, "result": ...}`; errors with `error_code` and
`description`), records every call, and queues updates for `getUpdates` (long polling honours
`offset` and `timeout`, and answers 409 while a webhook is set, as Telegram does).

Point the gateway at it with `[telegram] api_base = fake.base`. Also builders of Update JSON.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

BOT_ID = 7000001
TOKEN = f"{BOT_ID}:TEST-fake-bot-api-token"
_DATE = 1_763_370_000  # 17 Nov 2025, any fixed moment will do


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class FakeBotApi:
    """Records what the bot sends; feeds it updates by getUpdates."""

    def __init__(self, token: str = TOKEN, record: bool = True) -> None:
        self.token = token
        self.record = record  # load tests count calls without keeping them
        self.calls: list[Call] = []
        self.counts: dict[str, int] = {}
        self.pending: list[dict[str, Any]] = []  # updates not yet confirmed by an offset
        self.again: list[dict[str, Any]] = []  # handed out once more whatever the offset (a redelivery)
        self.webhook_url = ""
        self.webhook_secret = ""
        self.fail: dict[str, int] = {}  # method -> how many next calls answer 500
        self.files: dict[str, bytes] = {}  # file_id -> content, for getFile and the download
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base = ""

    # -- server -----------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        app.router.add_get("/_stats", self._stats)  # not Telegram's: what a load test reads
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.base = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        return self.base

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        file_id = request.match_info["path"].removeprefix("photos/")
        if file_id not in self.files:
            return _error(404, "Not Found")
        await self._note("download", {"file_id": file_id})
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")

    async def _stats(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"counts": self.counts}), content_type="application/json")

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            body = await request.read()
            return dict(orjson.loads(body)) if body else {}
        params: dict[str, Any] = {}
        form = await request.post()
        for key, value in {**request.query, **form}.items():
            text = value if isinstance(value, str) else str(value)
            if text[:1] in "[{":
                try:
                    params[key] = orjson.loads(text)
                    continue
                except orjson.JSONDecodeError:
                    pass
            params[key] = text
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params = await self._params(request)
        key = method.lower()
        if self.fail.get(key, 0) > 0:
            self.fail[key] -= 1
            return _error(500, "Internal Server Error: injected by the test")
        if key != "getupdates":
            await self._note(method, params)
        handler = getattr(self, f"_m_{key}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        result = await handler(params)
        if isinstance(result, web.Response):
            return result
        return web.Response(
            body=orjson.dumps({"ok": True, "result": result}), content_type="application/json"
        )

    async def _note(self, method: str, params: dict[str, Any]) -> None:
        self.counts[method] = self.counts.get(method, 0) + 1
        if self.record:
            self.calls.append(Call(method, params))
        async with self._changed:
            self._changed.notify_all()

    # -- methods ----------------------------------------------------------------------------

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": int(self.token.split(":")[0]),
            "is_bot": True,
            "first_name": "Показания",
            "username": "meter_test_bot",
        }

    async def _m_getme(self, params: dict[str, Any]) -> Any:
        return self._bot_user()

    def _message(self, params: dict[str, Any], message_id: int | None = None) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        out: dict[str, Any] = {
            "message_id": message_id or next(self._ids),
            "date": _DATE,
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": self._bot_user(),
            "text": params.get("text", ""),
        }
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            out["reply_markup"] = markup
        return out

    async def _m_sendmessage(self, params: dict[str, Any]) -> Any:
        if "chat_id" not in params or not params.get("text"):
            return _error(400, "Bad Request: message text is empty")
        return self._message(params)

    async def _m_editmessagetext(self, params: dict[str, Any]) -> Any:
        if "inline_message_id" in params:
            return True
        return self._message(params, int(params["message_id"]))

    async def _m_answercallbackquery(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_getfile(self, params: dict[str, Any]) -> Any:
        file_id = str(params.get("file_id", ""))
        if file_id not in self.files:
            return _error(400, "Bad Request: invalid file_id")
        return {
            "file_id": file_id,
            "file_unique_id": f"u-{file_id}",
            "file_size": len(self.files[file_id]),
            "file_path": f"photos/{file_id}",
        }

    async def _m_setmycommands(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_setwebhook(self, params: dict[str, Any]) -> Any:
        self.webhook_url = str(params.get("url", ""))
        self.webhook_secret = str(params.get("secret_token", ""))
        return True

    async def _m_deletewebhook(self, params: dict[str, Any]) -> Any:
        self.webhook_url = ""
        if str(params.get("drop_pending_updates", "")).lower() == "true":
            self.pending.clear()
        return True

    async def _m_getwebhookinfo(self, params: dict[str, Any]) -> Any:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self.pending),
        }

    async def _m_getupdates(self, params: dict[str, Any]) -> Any:
        if self.webhook_url:
            return _error(409, "Conflict: can't use getUpdates method while webhook is active")
        offset = int(params.get("offset") or 0)
        if offset:
            self.pending = [u for u in self.pending if u["update_id"] >= offset]
        timeout = min(float(params.get("timeout") or 0), 5.0)
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not self.pending and time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())
                except TimeoutError:
                    break
        await self._note("getUpdates", params)
        again, self.again = self.again, []
        return again + self.pending[:limit]

    # -- test side ----------------------------------------------------------------------------

    async def queue(self, *updates: dict[str, Any]) -> None:
        """Updates for the next getUpdates (polling mode)."""
        self.pending.extend(updates)
        async with self._changed:
            self._changed.notify_all()

    def sent(self, chat_id: int | None = None, method: str = "sendMessage") -> list[dict[str, Any]]:
        return [
            c.params
            for c in self.calls
            if c.method == method and (chat_id is None or int(c.params.get("chat_id", 0)) == chat_id)
        ]

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [str(p.get("text", "")) for p in self.sent(chat_id)]

    def last_text(self, chat_id: int) -> str:
        texts = self.texts(chat_id)
        assert texts, f"nothing was sent to chat {chat_id}; calls: {[c.method for c in self.calls]}"
        return texts[-1]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        async with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out; calls so far: {[(c.method, c.params) for c in self.calls]}"
                    )
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    pass


def _error(code: int, description: str) -> web.Response:
    return web.Response(
        status=code,
        body=orjson.dumps({"ok": False, "error_code": code, "description": description}),
        content_type="application/json",
    )


# -- Update JSON as Telegram sends it -----------------------------------------------------------


def _user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": "Иван", "language_code": "ru"}


def message_update(update_id: int, chat_id: int, text: str, user_id: int | None = None) -> dict[str, Any]:
    """A text message in a private chat (a group when chat_id < 0)."""
    user = user_id or abs(chat_id)
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": _DATE,
        "chat": {"id": chat_id, "type": "private", "first_name": "Иван"}
        if chat_id > 0
        else {"id": chat_id, "type": "group", "title": "Дом"},
        "from": _user(user),
        "text": text,
    }
    if text.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return {"update_id": update_id, "message": message}


def photo_update(
    update_id: int, chat_id: int, caption: str | None, sizes: list[tuple[str, int]], document: bool = False
) -> dict[str, Any]:
    """A photo with its caption: `sizes` are (file_id, file_size) from small to large, as
    Telegram sends a photo's sizes; `document`: the first sent uncompressed, as a file."""
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": _DATE,
        "chat": {"id": chat_id, "type": "private", "first_name": "Иван"},
        "from": _user(chat_id),
    }
    if document:
        file_id, size = sizes[0]
        message["document"] = {
            "file_id": file_id,
            "file_unique_id": f"u-{file_id}",
            "file_name": "meter.jpg",
            "mime_type": "image/jpeg",
            "file_size": size,
        }
    else:
        message["photo"] = [
            {
                "file_id": f,
                "file_unique_id": f"u-{f}",
                "width": 320 * (i + 1),
                "height": 240 * (i + 1),
                "file_size": s,
            }
            for i, (f, s) in enumerate(sizes)
        ]
    if caption is not None:
        message["caption"] = caption
    return {"update_id": update_id, "message": message}


def contact_update(
    update_id: int, chat_id: int, phone: str, contact_user_id: int | None = None
) -> dict[str, Any]:
    """The user shared a contact (their own, from the request_contact button, by default)."""
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": _DATE,
            "chat": {"id": chat_id, "type": "private", "first_name": "Иван"},
            "from": _user(chat_id),
            "contact": {
                "phone_number": phone,
                "first_name": "Иван",
                "user_id": chat_id if contact_user_id is None else contact_user_id,
            },
        },
    }


def callback_update(
    update_id: int, chat_id: int, data: str, message_id: int = 1, text: str = "…"
) -> dict[str, Any]:
    """The user pressed an inline button under one of the bot's messages."""
    return {
        "update_id": update_id,
        "callback_query": {
            "id": f"cq-{update_id}",
            "from": _user(chat_id),
            "chat_instance": f"ci-{chat_id}",
            "data": data,
            "message": {
                "message_id": message_id,
                "date": _DATE,
                "chat": {"id": chat_id, "type": "private", "first_name": "Иван"},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Показания"},
                "text": text,
            },
        },
    }


def buttons(params: dict[str, Any]) -> list[tuple[str, str]]:
    """(text, callback_data) of the inline keyboard of a sent message."""
    markup = params.get("reply_markup") or {}
    return [
        (str(b.get("text")), str(b.get("callback_data")))
        for row in markup.get("inline_keyboard", [])
        for b in row
    ]
