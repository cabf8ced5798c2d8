"""`[telegram]`: the bot, declared to the core as the `telegram` section (pyproject.toml,
`meter_gateway.config`); webhook at /channels/telegram/webhook or long polling."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from gateway.section import Section, secret


class TelegramConfig(Section):
    """The Telegram bot (adapters/telegram/): webhook at /channels/telegram/webhook or long polling."""

    enabled: bool = False
    """Run the Telegram bot."""
    token: str = ""
    """The bot's token from @BotFather (123456789:AA...)."""
    mode: Literal["webhook", "polling"] = "webhook"
    """webhook (Telegram calls /channels/telegram/webhook) or polling (the gateway asks)."""
    # Telegram sends it in X-Telegram-Bot-Api-Secret-Token; 1-256 of A-Z a-z 0-9 _ -
    webhook_secret: str = secret(default="")
    """Secret Telegram sends in X-Telegram-Bot-Api-Secret-Token (1-256 of A-Z a-z 0-9 _ -)."""
    api_base: str = "https://api.telegram.org"
    """Bot API server (or a self-hosted one)."""
    webhook_url: str = ""
    """Public HTTPS URL of the webhook route; set: registered at start-up."""
    poll_timeout_seconds: int = Field(25, ge=0, le=50)
    """Long-polling wait of one getUpdates."""
    link_max_failures: int = Field(5, ge=1)
    """Wrong second factors per chat within the window."""
    link_max_failures_per_account: int = Field(10, ge=1)
    """Wrong second factors per account, from any chat, within the window."""
    link_window_minutes: int = Field(60, ge=1)
    """The window of those counts."""
    history_limit: int = Field(10, ge=1, le=50)
    """Submissions per account shown by /history."""
    # Remind linked chats to submit (the core's reminder job, every [sms] reminder_check_seconds).
    reminders: bool = True
    """Remind linked chats to submit."""

    @model_validator(mode="after")
    def _usable(self) -> TelegramConfig:
        if not self.enabled:
            return self
        if not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", self.token):
            raise ValueError("token must be the bot token from @BotFather, like 123456789:AAE...")
        if self.mode == "webhook" and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", self.webhook_secret):
            raise ValueError("webhook mode needs webhook_secret: 1-256 characters of A-Z, a-z, 0-9, _ and -")
        if not self.api_base.startswith(("http://", "https://")):
            raise ValueError("api_base must be an http(s) URL")
        return self
