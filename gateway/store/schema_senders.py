"""The per-phone submission counter behind `[senders] submissions_per_hour`.

One row per sender and clock hour (UTC). The intake adds a group's submissions of a sender to
its row with one INSERT .. ON CONFLICT DO UPDATE .. RETURNING inside the group's transaction:
the count is read and raised in the same statement, so concurrent groups (other gateway
processes on PostgreSQL, which waits on the row's lock; the one SQLite writer) never both see
room for the last slot. Senders are stored as `sender_key` (never the phone in clear).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Integer, PrimaryKeyConstraint, String, Table, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.store.schema import UtcDateTime, metadata

if TYPE_CHECKING:
    from gateway.store.sync_bridge import Conn

sender_counts = Table(
    "sender_counts",
    metadata,
    Column("sender_key", String(64), nullable=False),
    Column("window_start", UtcDateTime(), nullable=False),  # the clock hour counted
    Column("submissions", Integer, nullable=False),
    PrimaryKeyConstraint("sender_key", "window_start", name="pk_sender_counts"),
)


def hour_of(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


async def count_submissions(conn: Conn, window: datetime, added: Mapping[str, int]) -> dict[str, int]:
    """Add `added[key]` submissions to each sender's count of `window`; the counts before them."""
    if not added:
        return {}
    # Rows in one order, so that two groups sharing senders lock them in the same order.
    rows = [{"sender_key": k, "window_start": window, "submissions": n} for k, n in sorted(added.items())]
    stmt: Any = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(sender_counts).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=[sender_counts.c.sender_key, sender_counts.c.window_start],
        set_={"submissions": sender_counts.c.submissions + stmt.excluded.submissions},
    ).returning(sender_counts.c.sender_key, sender_counts.c.submissions)
    result = await conn.execute(stmt)
    return {key: int(total) - added[key] for key, total in result.all()}


async def forget_before(conn: Conn, window: datetime) -> None:
    """Drop the counts of hours before `window`: they limit nothing any more."""
    await conn.execute(delete(sender_counts).where(sender_counts.c.window_start < window))
