"""Delivery state of the billing sinks (gateway/billing_delivery.py): which batch went where.

* `billing_sinks`: one row per sink name ever configured: when it was first seen (a `copy` sink
  delivers the batches committed from then on, not the whole history) and how far back its
  search for undelivered batches must still look (`copied_through`, see billing_delivery).
* `sink_deliveries`: one row per sink and batch it has tried: attempts, the first and last
  attempt, the last error, and `delivered_at` once the sink acknowledged it. A `billing` sink's
  batch is a row of `batches` leased under the client name `sink:<name>`; a `copy` sink's is a
  batch someone else committed. The batch id is the idempotency key the sink sends.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table

from gateway.store.schema import UtcDateTime, metadata

billing_sinks = Table(
    "billing_sinks",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("copied_through", UtcDateTime(), nullable=False),
)

sink_deliveries = Table(
    "sink_deliveries",
    metadata,
    Column("sink", String(32), primary_key=True),
    Column("batch_id", String(36), ForeignKey("batches.id"), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_attempt_at", UtcDateTime(), nullable=False),
    Column("last_attempt_at", UtcDateTime(), nullable=False),
    Column("last_error", String(200), nullable=True),
    Column("delivered_at", UtcDateTime(), nullable=True),
    Index("ix_sink_deliveries_open", "sink", "delivered_at"),
)
