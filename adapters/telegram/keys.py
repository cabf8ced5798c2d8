"""The application key of the Telegram channel, where the webhook's handler finds the bot:
importing it costs nothing (no aiogram)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from adapters.telegram.channel import TelegramChannel

# Set by the door's install when `[telegram] enabled`; absent otherwise.
TELEGRAM: web.AppKey[TelegramChannel] = web.AppKey("telegram")
