"""Telegram (aiogram 3): residents link their chat to an account and send readings as free text
(the one grammar) or step by step with buttons; the verdict comes back as a message.

`door.install` wires the bot into `meter-gateway run` (importing aiogram only when `[telegram]
enabled`); webhook.py receives the updates, channel.py handles each exactly once (per-chat lock,
outbox, store before acknowledge), bot_commands.py, linking.py and readings.py hold the
handlers, notifier.py what the bot sends outside a conversation, texts.py every word it says;
storage.py and tables.py its rows, config.py its `[telegram]` section, privacy.py what it keeps
about residents.
"""
