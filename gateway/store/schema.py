"""The database schema (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Timestamps are stored in UTC. Values are stored as decimal strings exactly as validated, so a
reading is never rounded on its way to billing ("no errors in entered readings").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only autoincrements INTEGER PRIMARY KEY; BigInteger stays BIGINT on PostgreSQL.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite keeps no zone, so it is stored as UTC and restored."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC one is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("number", String(32), nullable=False, unique=True),
    Column("address", Text, nullable=False, default=""),
    Column("timezone", String(64), nullable=True),  # the resident's own zone, when not the branch's
    Column("branch", String(32), nullable=True),  # [branches.<id>]; None: the default branch ([calendar])
    Column("updated_at", UtcDateTime(), nullable=False),
)

meters = Table(
    "meters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("serial", String(64), nullable=False, unique=True),
    Column("model", String(128), nullable=False, default=""),
    Column("zones", String(32), nullable=False),  # "T" | "T1;T2" | "T1;T2;T3"
    Column("digits", Integer, nullable=False),
    Column("max_power_kw", String(16), nullable=True),  # decimal string, kW
    Column("point", String(128), nullable=True),  # a business customer's name for the metering point
    # Instrument transformers' ratios (decimal strings; None: none, 1): the billed reading is the
    # register times ct x vt (gateway/ratios.py)
    Column("ct_ratio", String(16), nullable=True),
    Column("vt_ratio", String(16), nullable=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("updated_at", UtcDateTime(), nullable=False),
)

phones = Table(
    "phones",
    metadata,
    Column("account_id", Id, ForeignKey("accounts.id"), primary_key=True),
    Column("phone", String(20), primary_key=True),
    Index("ix_phones_phone", "phone"),
)

# E-mail addresses allowed to submit for an account (registry `emails`, lower case): the mail
# door's senders are verified against them as SMS senders are against `phones`.
account_emails = Table(
    "account_emails",
    metadata,
    Column("account_id", Id, ForeignKey("accounts.id"), primary_key=True),
    Column("email", String(254), primary_key=True),
    Index("ix_account_emails_email", "email"),
)

# One row, bumped by every registry import: the intake writer keeps the registry rows it has read
# in memory and reads them again when this changes (gateway/meter_cache.py).
registry_version = Table(
    "registry_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

# The last accepted value of each meter zone and the running totals the plausibility rules
# need, so validating a reading costs one indexed lookup instead of a scan of its history.
# Rows exist for every zone of every meter (created by the registry import), which lets
# PostgreSQL lock them FOR UPDATE while a reading for that zone is being decided.
meter_state = Table(
    "meter_state",
    metadata,
    Column("meter_id", Id, ForeignKey("meters.id"), primary_key=True),
    Column("zone", String(4), primary_key=True),
    Column("last_value", String(32), nullable=True),
    Column("last_taken_at", UtcDateTime(), nullable=True),
    Column("last_receipt", Id, nullable=True),
    Column("last_period", String(7), nullable=True),
    Column("total_kwh", String(32), nullable=False, default="0"),
    Column("total_days", String(32), nullable=False, default="0"),
    # The last value each kind of source reported, for cross-checking devices against residents.
    Column("dev_value", String(32), nullable=True),
    Column("dev_taken_at", UtcDateTime(), nullable=True),
    Column("res_value", String(32), nullable=True),
    Column("res_taken_at", UtcDateTime(), nullable=True),
    # The latest accepted control reading (an inspector's): residents' readings are compared with it.
    Column("ctl_value", String(32), nullable=True),
    Column("ctl_taken_at", UtcDateTime(), nullable=True),
)

# Every inbound message, stored before the sender is answered; the answer is kept with it so a
# redelivered message (same channel and channel message id) gets exactly the same reply.
inbound = Table(
    "inbound",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("channel", String(16), nullable=False),
    Column("channel_message_id", String(128), nullable=True),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("source", String(128), nullable=False),  # masked phone, chat, device, employee
    Column("payload", Text, nullable=False),
    Column("response", Text, nullable=False),  # the verdict as JSON
    UniqueConstraint("channel", "channel_message_id", name="uq_inbound_channel_message"),
)

# Residents' raw messages not purged yet (gateway/retention.py): a partial index, so the purge
# job reads only what is left to do.
# The channels whose raw messages are a resident's own words (emptied after the retention).
RESIDENT_PAYLOAD_CHANNELS = ("sms", "telegram", "ivr", "cabinet", "mail")
INBOUND_UNPURGED = "payload <> '' AND channel IN ('sms', 'telegram', 'ivr', 'cabinet', 'mail')"
Index(
    "ix_inbound_unpurged",
    inbound.c.received_at,
    sqlite_where=text(INBOUND_UNPURGED),
    postgresql_where=text(INBOUND_UNPURGED),
)

readings = Table(
    "readings",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("inbound_id", Id, ForeignKey("inbound.id"), nullable=False, index=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=False),
    Column("zone", String(4), nullable=False),
    Column("value", String(32), nullable=False),  # the billed value: the register x `ratio`
    # A meter behind instrument transformers: the register as read and the ratio applied (ct x vt);
    # None for a meter without (value is then the register)
    Column("raw_value", String(32), nullable=True),
    Column("ratio", String(24), nullable=True),
    Column("taken_at", UtcDateTime(), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("source", String(128), nullable=False),
    Column("employee", String(128), nullable=True),
    # A control reading: taken by the retailer's inspector (Submission.control)
    Column("control", Boolean, nullable=False, default=False, server_default=text("false")),
    Column("period", String(7), nullable=False),
    Column("verdict", String(24), nullable=False),
    Column("reasons", Text, nullable=False),  # JSON list of {code, severity, zone, message_ru, message_en}
    Column("due_at", UtcDateTime(), nullable=False),
    Column("batch_id", String(36), nullable=True),
    Column("committed_at", UtcDateTime(), nullable=True),
    Index("ix_readings_meter_zone_taken", "meter_id", "zone", "taken_at"),
    Index("ix_readings_billable", "verdict", "committed_at", "id"),
    Index("ix_readings_batch", "batch_id"),
    Index("ix_readings_received", "received_at"),
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("client", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("lease_expires_at", UtcDateTime(), nullable=False),
    Column("committed_at", UtcDateTime(), nullable=True),
    Column("size", Integer, nullable=False),
    Index("ix_batches_committed", "committed_at"),  # the batches a `copy` sink has still to deliver
)

# Every change an operator or a confirmation makes to a stored reading: nothing is deleted.
audit = Table(
    "audit",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reading_id", Id, ForeignKey("readings.id"), nullable=True),
    Column("action", String(32), nullable=False),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Column("comment", Text, nullable=True),
    Index("ix_audit_reading", "reading_id"),  # when a hold ended, for the billing SLA view
)
