"""Meter photos kept with the readings they were sent with (`reading_photos`), as evidence for the
back office (gateway/photos.py). One photo per submission (its receipt), already stripped of its
metadata and scaled down, with a thumbnail; emptied with the residents' other raw messages after
`privacy.payload_retention_days` (gateway/retention.py)."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, LargeBinary, String, Table

from gateway.store.schema import Id, UtcDateTime, metadata

reading_photos = Table(
    "reading_photos",
    metadata,
    Column("inbound_id", Id, ForeignKey("inbound.id"), primary_key=True),  # the reading's receipt
    Column("received_at", UtcDateTime(), nullable=False),
    Column("channel", String(16), nullable=False),  # the door it came through
    Column("content_type", String(32), nullable=False),  # of `image` and `thumb`: image/jpeg
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("sent_bytes", Integer, nullable=False),  # the size of the photo as the resident sent it
    Column("image", LargeBinary, nullable=False),
    Column("thumb", LargeBinary, nullable=False),
    Index("ix_reading_photos_received", "received_at"),
)
