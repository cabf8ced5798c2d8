"""Tables of the Modbus polling channel (adapters/meters/poller.py), in the shared MetaData.

- `modbus_leases`: which gateway process polls which bus. Several processes on one PostgreSQL
  share the buses: a process polls a bus only while it holds the bus's lease, renewing it each
  cycle; a lease not renewed in time is taken over by another process.
- `modbus_meters`: what the poller learned about the meter at each bus address: the serial and
  identity (serial-number register) last seen, the profile detected. Kept across restarts so a
  replaced meter is noticed even when the gateway was down while it was swapped.
- `modbus_events`: what happened to a meter that an operator should know: a meter replaced by
  another at the same unit id, a profile detected, a meter that could not be identified.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table, Text

from gateway.store.schema import Id, UtcDateTime, metadata

modbus_leases = Table(
    "modbus_leases",
    metadata,
    Column("bus", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
)

modbus_meters = Table(
    "modbus_meters",
    metadata,
    Column("bus", String(64), primary_key=True),
    Column("address", String(128), primary_key=True),  # "7" on a serial line, "host:port/7" on TCP
    Column("configured_serial", String(64), nullable=True),  # as configured (None: read from the meter)
    Column("serial", String(64), nullable=True),  # the serial readings are submitted under
    Column("identity", String(64), nullable=True),  # the meter's serial-number register, as read
    Column("profile", String(64), nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
)

modbus_events = Table(
    "modbus_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("bus", String(64), nullable=False),
    Column("address", String(128), nullable=False),
    Column("kind", String(32), nullable=False),  # meter_replaced | profile_detected | unidentified
    Column("old_serial", String(64), nullable=True),
    Column("new_serial", String(64), nullable=True),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_modbus_events_at", "at"),
)
