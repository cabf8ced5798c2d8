"""`[sinks]`: where the gateway delivers batches of readings itself (README, "Billing sinks"),
declared to the core as the `sinks` section (pyproject.toml, `meter_gateway.config`).

One sub-section per kind of sink, each off until `enabled`: `[sinks.http]` (the billing system's
HTTP endpoint), `[sinks.folder]` (CSV or XML files) and `[sinks.nats]` (a NATS JetStream
stream). The keys every sink has are in `SinkSettings`; the rules they follow are the core's
(gateway/billing_delivery.py).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.section import Section


class SinkSettings(Section):
    enabled: bool = False
    """Deliver batches through this sink."""
    # billing: the sink is how billing receives readings (a batch is committed on its
    # acknowledgement); copy: it gets each batch billing has committed, for other systems.
    role: Literal["billing", "copy"] = "billing"
    """billing: billing receives readings this way (committed on acknowledgement); copy: committed batches, for other systems."""
    batch_size: int = Field(1000, ge=1, le=10_000)
    """Readings per batch at most."""
    interval_seconds: float = Field(10.0, gt=0, le=86_400)
    """How often to look for readings when nothing waits."""
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    """One delivery attempt at most."""
    retry_initial_seconds: float = Field(1.0, gt=0, le=3600)
    """Pause after a failure, doubling..."""
    retry_max_seconds: float = Field(300.0, gt=0, le=86_400)
    """...up to this."""

    @model_validator(mode="after")
    def _retry_order(self) -> SinkSettings:
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("retry_max_seconds must not be less than retry_initial_seconds")
        return self


class HttpSinkConfig(SinkSettings):
    """`[sinks.http]`: POST each batch to the billing system; a 2xx answer acknowledges it."""

    url: str = Field("", max_length=2000)
    """The billing system's endpoint (http:// or https://) each batch is POSTed to."""
    token: str = ""
    """Sent as `Authorization: Bearer <token>` when set."""

    @model_validator(mode="after")
    def _url(self) -> HttpSinkConfig:
        if self.enabled and not re.match(r"https?://[^\s/]+", self.url):
            raise ValueError("url must be an http:// or https:// address when enabled")
        return self


class FolderSinkConfig(SinkSettings):
    """`[sinks.folder]`: write each batch as a file, every `interval_seconds`."""

    interval_seconds: float = Field(3600.0, gt=0, le=86_400)
    """How often a file is written when readings wait."""
    batch_size: int = Field(10_000, ge=1, le=100_000)
    """Readings per file at most."""
    path: str = ""
    """The folder the files are written to."""
    format: Literal["csv", "xml"] = "csv"
    """csv or xml."""

    @model_validator(mode="after")
    def _path(self) -> FolderSinkConfig:
        if self.enabled and not self.path:
            raise ValueError("path must name the folder when enabled")
        return self


class NatsSinkConfig(SinkSettings):
    """`[sinks.nats]`: publish each reading of a batch to a JetStream stream."""

    role: Literal["billing", "copy"] = "copy"
    """billing or copy (see [sinks.http] role)."""
    interval_seconds: float = Field(5.0, gt=0, le=86_400)
    """How often to look for readings when nothing waits."""
    url: str = "nats://127.0.0.1:4222"
    """The NATS server."""
    stream: str = "METER_READINGS"
    """The JetStream stream (letters, digits, _ or -)."""
    subject: str = "meter.readings"
    """The subject each reading is published on."""
    create_stream: bool = True
    """Add the stream (file storage) when the server does not have it."""

    @field_validator("stream")
    @classmethod
    def _stream_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
            raise ValueError("must be letters, digits, _ or - (a JetStream stream name)")
        return value

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", value):
            raise ValueError("must be a plain subject like meter.readings (no wildcards)")
        return value


class SinksConfig(Section):
    """`[sinks]`: the sub-sections above."""

    http: HttpSinkConfig = Field(default_factory=HttpSinkConfig)
    folder: FolderSinkConfig = Field(default_factory=FolderSinkConfig)
    nats: NatsSinkConfig = Field(default_factory=NatsSinkConfig)

    def enabled(self) -> dict[str, SinkSettings]:
        found: dict[str, SinkSettings] = {"http": self.http, "folder": self.folder, "nats": self.nats}
        return {name: sink for name, sink in found.items() if sink.enabled}

    @model_validator(mode="after")
    def _one_billing_sink(self) -> SinksConfig:
        # Two billing sinks would share the readings between them, each getting a part.
        billing = sorted(name for name, sink in self.enabled().items() if sink.role == "billing")
        if len(billing) > 1:
            raise ValueError(
                f'at most one enabled sink may have role = "billing" (now: {", ".join(billing)});'
                ' make the others role = "copy"'
            )
        return self
