"""`[mqtt]`: the broker and topics the gateway subscribes to, declared to the core as the `mqtt`
section (pyproject.toml, `meter_gateway.config`)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from gateway.section import Section


class MqttConfig(Section):
    """`[mqtt]`: readings that devices publish to an MQTT broker (adapters/mqtt/subscriber.py)."""

    enabled: bool = False
    """Subscribe to an MQTT broker for device readings."""
    host: str = "127.0.0.1"
    """The broker's address."""
    port: int = Field(1883, ge=1, le=65535)
    """The broker's port."""
    username: str = ""
    """Login at the broker; empty: anonymous."""
    password: str = ""
    """Password at the broker."""
    # Fixed client id: the broker keeps this gateway's session (subscriptions and messages
    # published while it is away) under it. Empty: "meter-gateway-<host name>".
    client_id: str = Field("", max_length=128)
    """Fixed client id under which the broker keeps this gateway's session; empty: meter-gateway-<host>."""
    topics: list[str] = Field(default_factory=lambda: ["meters/+/readings"])
    """Topic filters subscribed to."""
    qos: int = 1
    """Subscription QoS; only 1 (acknowledged after the reading is stored)."""
    reply_topic_prefix: str = ""
    """Set: each item's verdict is published to <prefix>/<meter>."""
    keepalive_seconds: int = Field(60, ge=5, le=3600)
    """MQTT keep-alive."""
    reconnect_initial_seconds: float = Field(1.0, gt=0)
    """Broker gone: retry after this, doubling..."""
    reconnect_max_seconds: float = Field(60.0, gt=0)
    """...up to this."""
    max_in_flight: int = Field(32, ge=1, le=1000)
    """Messages being decided at once."""

    @field_validator("topics")
    @classmethod
    def _topic_filters(cls, value: list[str]) -> list[str]:
        for topic in value:
            levels = topic.split("/")
            bad = (
                not topic
                or "#" in topic[:-1]
                or (topic.endswith("#") and levels[-1] != "#")
                or any("+" in level and level != "+" for level in levels)
                or (levels[0] == "$share" and len(levels) < 3)
            )
            if bad:
                raise ValueError(f"{topic!r} is not an MQTT topic filter (like meters/+/readings)")
        return value

    @field_validator("qos")
    @classmethod
    def _qos(cls, value: int) -> int:
        # QoS 0 lets the broker drop readings; QoS 2 passes ownership at PUBREC, before the
        # reading is stored. QoS 1 with the ack sent after the commit loses nothing.
        if value != 1:
            raise ValueError(
                "must be 1 (acknowledged after the reading is stored; 0 and 2 are not supported)"
            )
        return value

    @field_validator("reply_topic_prefix")
    @classmethod
    def _plain_prefix(cls, value: str) -> str:
        if "+" in value or "#" in value or value.endswith("/"):
            raise ValueError("must be a plain topic without wildcards or a trailing / (like meters/replies)")
        return value

    @model_validator(mode="after")
    def _usable(self) -> MqttConfig:
        if self.enabled and not self.topics:
            raise ValueError("topics must list at least one topic filter when enabled")
        if self.password and not self.username:
            raise ValueError("password needs username")
        return self
