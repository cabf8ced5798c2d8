"""`[sms]`: the SMS door's section, declared to the core as `sms` (pyproject.toml,
`meter_gateway.config`)."""

from __future__ import annotations

from pydantic import Field

from gateway.section import Section, secret


class SmsConfig(Section):
    """`[sms]`: Kannel's sms-service route, aggregators' webhooks and SMS reminders (adapters/sms/)."""

    kannel_key: str = secret(default="")
    """Shared secret in Kannel's sms-service get-url; empty: the Kannel route is off."""
    # Kannel's sendsms with its user, e.g. http://127.0.0.1:13013/cgi-bin/sendsms?username=gw&password=..
    # (the gateway adds to, text, charset, coding); empty: no SMS reminders.
    sendsms_url: str = ""
    """Kannel's sendsms URL with its user and password; empty: no SMS reminders or codes."""
    # Longest reply: 2 concatenated UCS-2 parts carry 2 x 67 characters; one part carries 70.
    reply_max_chars: int = Field(134, ge=70, le=134)
    """Longest reply (70: one UCS-2 part; 134: two concatenated parts)."""
    replies_per_hour: int = Field(10, ge=1)
    """Replies per sender per hour; over it the reading is kept, the reply not sent."""
    twilio_auth_token: str = ""
    """Auth token of a Twilio-compatible aggregator; empty: its webhook is off."""
    twilio_webhook_url: str = ""
    """The webhook URL as configured at the aggregator (when behind a proxy)."""
    reminders: bool = True
    """Remind residents by SMS (needs sendsms_url)."""
    reminder_check_seconds: float = Field(300.0, gt=0)
    """How often the reminder job looks for work."""
    sendsms_timeout_seconds: float = Field(10.0, gt=0)
    """How long one sendsms request may take."""
    # "Показания переданы в расчёт" by SMS too (to the phone the reading came from); Telegram and
    # the cabinet always tell it. Costs an SMS per reading, hence off by default.
    billing_notices: bool = False
    """Also tell by SMS when a reading went to billing (costs an SMS per reading)."""
