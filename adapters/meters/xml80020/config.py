"""`[xml80020]`: which measuring channel of an XML 80020/80040 file is which meter and zone, and the
folder the gateway watches for such files (declared to the core as the `xml80020` section)."""

from __future__ import annotations

from pydantic import Field, model_validator

from gateway.section import Section


class ChannelMapping(Section):
    """`[[xml80020.channels]]`: one measuring channel of one measuring point."""

    point: str = Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_-]+$")
    """The measuring point's code (`<measuringpoint code="...">`, the АТС's point code)."""
    channel: str = Field(min_length=1, max_length=8, pattern=r"^[0-9]+$")
    """The measuring channel's code (`<measuringchannel code="01">`: 01 active energy import)."""
    meter: str = Field(min_length=1, max_length=64)
    """The meter's serial in the registry."""
    zone: str = Field("T", pattern=r"^(T|T1|T2|T3|T4)$")
    """The meter's zone the channel's energy belongs to (T, T1..T4)."""


class Xml80020Config(Section):
    """`[xml80020]`: head-end files (adapters/meters/xml80020/)."""

    channels: list[ChannelMapping] = Field(default_factory=list)
    """The mapped channels: [[xml80020.channels]] tables; a channel not listed is skipped and reported."""
    time_zone: str = "Europe/Moscow"
    """The zone of the files' period times (the АТС regulation's files are in Moscow time)."""
    watch_dir: str | None = None
    """A folder the gateway imports *.xml files from (moved to done/ or failed/ with a report); none: no folder."""
    poll_seconds: float = Field(10.0, gt=0, le=3600)
    """How often the watched folder is looked at."""
    max_file_bytes: int = Field(64 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    """A larger file is refused whole."""

    @model_validator(mode="after")
    def _one_mapping_per_channel(self) -> Xml80020Config:
        seen: set[tuple[str, str]] = set()
        for c in self.channels:
            key = (c.point, c.channel.zfill(2))
            if key in seen:
                raise ValueError(f"point {c.point} channel {c.channel} is mapped twice")
            seen.add(key)
        targets = [(c.meter, c.zone) for c in self.channels]
        twice = sorted({f"{m} {z}" for m, z in targets if targets.count((m, z)) > 1})
        if twice:
            raise ValueError(f"one meter zone takes one channel: {', '.join(twice)} mapped more than once")
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"time_zone: unknown zone {self.time_zone!r}") from None
        return self
