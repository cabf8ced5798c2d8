"""When a held reading is reminded, escalated and expired, and the back office's queue by due time.

* Every reading carries `due_at`, set at receipt from `[billing] sla_working_days` (held ones too).
* A reading awaiting its sender's confirmation is reminded once `[held]
  confirm_remind_after_hours` after receipt, and escalated to the back office (flagged)
  `escalate_after_hours` after receipt, or at the latest when the last working day before its
  period's cut-off begins, so the back office has that day to decide.
* A reading still held (awaiting confirmation or flagged) when its period closes (local midnight
  starting the cut-off day of the account's branch, gateway/branches.py) expires: rejected with
  reason code "expired".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.account_views import ReceiptView, _group_receipts, _receipt_query
from gateway.branches import Branch
from gateway.config import Config
from gateway.model import Status
from gateway.store.schema import accounts, readings

HELD = (Status.NEEDS_CONFIRMATION.value, Status.FLAGGED.value)


@dataclass(frozen=True, slots=True)
class HeldReceipt:
    """One held submission (all its zones) as the lifecycle job sees it."""

    receipt: int
    account_id: int
    channel: str
    period: str
    verdict: str
    received_at: datetime
    branch: str | None = None  # the account's (gateway/branches.py); None: the default


def remind_at(config: Config, held: HeldReceipt) -> datetime:
    return held.received_at + timedelta(hours=config.held.confirm_remind_after_hours)


def escalate_at(branch: Branch, config: Config, held: HeldReceipt) -> datetime:
    """`escalate_after_hours` after receipt, at the latest when the last working day before the
    period's cut-off in the account's branch begins (so the back office still has a working day
    for it)."""
    calendar = branch.calendar
    closes = branch.closes(held.period)
    day = calendar.local_date(closes) - timedelta(days=1)
    while not calendar.is_working_day(day):
        day -= timedelta(days=1)
    last_chance = datetime.combine(day, time(0), tzinfo=calendar.timezone).astimezone(UTC)
    return min(held.received_at + timedelta(hours=config.held.escalate_after_hours), last_chance)


async def held_receipts(conn: AsyncConnection) -> list[HeldReceipt]:
    """Every held submission, oldest first (held readings are few: a query, not a scan per rule)."""
    rows = await conn.execute(
        select(
            readings.c.inbound_id,
            func.min(readings.c.account_id),
            func.min(readings.c.channel),
            func.min(readings.c.period),
            func.min(readings.c.verdict),
            func.min(readings.c.received_at),
            func.min(accounts.c.branch),
        )
        .join(accounts, accounts.c.id == readings.c.account_id)
        .where(readings.c.verdict.in_(HELD))
        .group_by(readings.c.inbound_id)
        .order_by(readings.c.inbound_id)
    )
    return [HeldReceipt(*r) for r in rows.all()]


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A held submission on the back office's queue, with its due time."""

    view: ReceiptView
    due_at: datetime
    time_left: str  # "осталось 5 ч", "просрочено на 2 ч"
    overdue: bool


async def queue(engine: AsyncEngine, now: datetime, limit: int = 100) -> list[QueueItem]:
    """Held submissions, soonest due first, each with the time left in Russian."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                _receipt_query()
                .add_columns(readings.c.due_at)
                .where(readings.c.verdict.in_(HELD))
                .order_by(readings.c.due_at, readings.c.inbound_id, readings.c.zone)
                .limit(limit * 3)
            )
        ).all()
    due = {r.inbound_id: r.due_at for r in rows}
    return [
        QueueItem(v, due[v.receipt], time_left_ru(due[v.receipt], now), due[v.receipt] <= now)
        for v in _group_receipts(list(rows))[:limit]
    ]


def time_left_ru(due_at: datetime, now: datetime) -> str:
    """ "осталось 5 ч", "осталось 40 мин", "осталось 3 дн", "просрочено на 2 ч"."""
    seconds = (due_at - now).total_seconds()
    span = _span_ru(abs(seconds))
    return f"осталось {span}" if seconds > 0 else f"просрочено на {span}"


def _span_ru(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{max(minutes, 1)} мин"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} ч"
    return f"{hours // 24} дн"
