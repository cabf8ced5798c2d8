"""`[devices]`: the bearer tokens of devices pushing readings, and how many readings one request
(or one MQTT message) may carry; declared to the core as the `devices` section (pyproject.toml,
`meter_gateway.config`)."""

from __future__ import annotations

from pydantic import Field

from gateway.section import Section, secret


class DevicesConfig(Section):
    """`[devices]`: device push (adapters/devices/push.py); `max_items` also bounds an MQTT message."""

    tokens: list[str] = secret(default_factory=list)
    """Bearer tokens of field devices and head-end systems."""
    max_items: int = Field(5000, ge=1)
    """Readings per device request (or MQTT message) at most."""
