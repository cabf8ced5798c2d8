"""Tables of the Modbus polling channel (adapters/meters/poller.py), in the shared MetaData.

- `modbus_leases`: which gateway process polls which bus. Several processes on one PostgreSQL
  share the buses: a process polls a bus only while it holds the bus's lease, renewing it each
  cycle; a lease not renewed in time is taken over by another process.
- `modbus_meters`: what the poller learned about the meter at each bus address: the serial and
  identity (serial-number register) last seen, the profile detected. Kept across restarts so a
  replaced meter is noticed even when the gateway was down while it was swapped.
- `modbus_events`: what happened to a meter that an operator should know: a meter replaced by
  another at the same unit id, a profile detected, a meter that could not be identified.
- `meter_intervals`: interval data (adapters/meters/intervals.py): the readings of polled meters
  that billing was not sent (a bus's `billing` setting), and the interval energy of head-end
  files (XML 80020). One row per meter, zone, kind and moment, so a repeated poll or a file
  imported again adds nothing.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table, Text, UniqueConstraint

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

meter_intervals = Table(
    "meter_intervals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("meter_serial", String(64), nullable=False),  # the registry's serial (no foreign key:
    # a head-end file or a bus may name a meter before the registry does)
    Column("zone", String(4), nullable=False),  # T, T1..T4
    # "register": the counter's reading at `at` (a polled meter);
    # "energy": the kWh consumed over (start_at, at] (an interval of a head-end file)
    Column("kind", String(8), nullable=False),
    Column("start_at", UtcDateTime(), nullable=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("value", String(32), nullable=False),  # kWh, decimal text; a register times its ratio
    Column("raw_value", String(32), nullable=True),  # the register as read, when a ratio applies
    Column("status", String(16), nullable=True),  # as the source marks the value (80020 `status`)
    Column("source", String(128), nullable=False),  # "modbus:<bus>:<unit>", "80020:<file>:<channel>"
    Column("received_at", UtcDateTime(), nullable=False),
    UniqueConstraint("meter_serial", "zone", "kind", "at", name="uq_meter_intervals_point"),
    Index("ix_meter_intervals_serial_at", "meter_serial", "at"),
    Index("ix_meter_intervals_at", "at"),
)
