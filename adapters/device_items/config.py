"""`[devices]`: the bearer tokens of devices pushing readings, and how many readings one request
(or one MQTT message) may carry; declared to the core as the `devices` section (pyproject.toml,
`meter_gateway.config`)."""

from __future__ import annotations

from pydantic import Field

from gateway.section import Section


class DevicesConfig(Section):
    """`[devices]`: device push (adapters/devices/push.py); `max_items` also bounds an MQTT message."""

    tokens: list[str] = Field(default_factory=list)
    max_items: int = Field(5000, ge=1)
