"""What `meter-gateway demo` adds for SMS: Kannel's route on loopback with a demo key, to call with
curl as smsbox would (no SMS centre: nothing is sent, the reply is the answer's body)."""

from __future__ import annotations

from typing import Any

from adapters.sms.config import SmsConfig
from gateway.plugins import DemoPart

DEMO_KANNEL_KEY = "demo-kannel-key"


def demo_config(config: Any) -> DemoPart:
    sms = config.section("sms", SmsConfig)
    sms = sms.model_copy(update={"kannel_key": sms.kannel_key or DEMO_KANNEL_KEY})
    base = f"http://{config.http.host}:{config.http.port}"
    return DemoPart(
        overrides={"sms": sms},
        hints=[
            "SMS through Kannel's route (as smsbox calls it; the reply is the body):",
            f"  curl '{base}/channels/sms/kannel?key={sms.kannel_key}&from=%2B79161234567&id=demo-1&text=2000001+12345'",
        ],
    )
