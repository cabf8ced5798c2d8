"""The SMS door: residents' readings and commands by SMS, and SMS reminders and notices.

Inbound SMS arrive through Kannel's sms-service (`kannel.py`, `/channels/sms/kannel`) or a
Twilio-compatible aggregator's webhook (`twilio.py`, `/channels/sms/twilio`); both hand the
message to one inbox (`inbox.py`: redeliveries, commands, the core's intake, the reply budget).
`text.py` words every reply to fit one SMS where it can; `tables.py` keeps the reply log and
the opt-outs; `config.py` is the `[sms]` section; `privacy.py` says what of a resident the door
keeps (for `privacy report`). Outgoing SMS (reminders, notices, one-time codes) go through
Kannel's sendsms (`kannel.KannelSendsms`, the door's notifier of gateway/notify.py). Declared in
pyproject.toml (gateway/plugins.py).
"""
