"""The Telegram door's entry in `meter-gateway run` (pyproject.toml, `meter_gateway.channels`).

Importing aiogram takes seconds, so this module imports none of it: `install` brings in the
channel only when `[telegram] enabled`, and a gateway without the bot starts without it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from adapters.telegram.config import TelegramConfig

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.host import Host


def install(host: Host, app: web.Application) -> None:
    """Add the Telegram channel when `[telegram] enabled`: the webhook route or the poller,
    its notifier (reminders to linked chats, notices, codes), and its probe under /healthz."""
    settings = host.config.section("telegram", TelegramConfig)
    if not settings.enabled:
        host.health_probes["telegram"] = lambda: {"status": "disabled"}
        return
    from adapters.telegram import webhook
    from adapters.telegram.channel import TelegramChannel
    from adapters.telegram.keys import TELEGRAM
    from adapters.telegram.notifier import TelegramNotifier
    from gateway.verification import shared_verifier

    logging.getLogger("aiogram.event").setLevel(logging.WARNING)  # one INFO line per update otherwise
    tg = TelegramChannel(host.config, host.engine, host.intake, host.clock, shared_verifier(host, app))
    app[TELEGRAM] = tg
    host.health_probes["telegram"] = tg.health

    async def close_bot(_app: web.Application) -> None:
        await tg.close()

    app.on_cleanup.append(close_bot)
    host.notifiers.add(TelegramNotifier(tg, reminders=settings.reminders))
    if settings.mode == "webhook":
        app.router.add_post(webhook.WEBHOOK_PATH, webhook.webhook)
        if settings.webhook_url:

            async def register_webhook(_host: Host) -> None:
                await webhook.register_webhook(tg)

            host.background.append(register_webhook)
    else:

        async def poll(_host: Host) -> None:
            await webhook.poll(tg)

        host.background.append(poll)
