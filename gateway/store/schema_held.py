"""Notices to residents about their readings, kept as an outbox (the `notices` table).

A notice is written in the same transaction as the change it tells of (billing's commit, a
held reading's expiry) or by the held-readings job when a reminder falls due, so a commit never
waits on a channel and nothing is lost in a crash. The job (gateway/held_job.py) turns a
notice with `channel = "*"` into one row per channel and recipient, then claims each of those
before sending it, so it goes once whichever gateway process gets there first.

Kinds: "confirm_reminder" (a reading still awaits the sender's confirmation), "committed"
(billing has taken the reading), "expired" (the period closed with the reading undecided).
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text, UniqueConstraint

from gateway.store.schema import Id, UtcDateTime, metadata

FANOUT = "*"  # the channel of a notice not yet split into recipients

notices = Table(
    "notices",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("receipt", Id, nullable=False),  # the reading's inbound id
    Column("kind", String(24), nullable=False),
    Column("channel", String(16), nullable=False),  # "*", "sms", "telegram", "cabinet"
    Column("recipient", String(64), nullable=False, default=""),  # phone (E.164) or chat id
    Column("created_at", UtcDateTime(), nullable=False),
    Column("claimed_at", UtcDateTime(), nullable=True),  # being sent (or the process died sending)
    Column("done_at", UtcDateTime(), nullable=True),
    Column("outcome", String(16), nullable=True),  # sent, shown, dropped, failed, split
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    UniqueConstraint("receipt", "kind", "channel", "recipient", name="uq_notices_once"),
    Index("ix_notices_open", "done_at", "channel"),
)
