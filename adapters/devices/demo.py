"""What `meter-gateway demo` adds for device push: a demo token, and the curl line that pushes a
reading with it."""

from __future__ import annotations

from typing import Any

from adapters.device_items.config import DevicesConfig
from gateway.plugins import DemoPart

DEMO_DEVICE_TOKEN = "demo-device-token"


def demo_config(config: Any) -> DemoPart:
    devices = config.section("devices", DevicesConfig)
    devices = devices.model_copy(update={"tokens": devices.tokens or [DEMO_DEVICE_TOKEN]})
    base = f"http://{config.http.host}:{config.http.port}"
    return DemoPart(
        overrides={"devices": devices},
        hints=[
            "Device push:",
            f"""  curl -X POST -H 'Authorization: Bearer {devices.tokens[0]}' -d '{{"readings":[{{"id":"try-1","meter":"E-45871234","value":"12345"}}]}}' {base}/api/v1/readings""",
        ],
    )
