"""What verified residents and staff see of an account: read-only views over the store.

The web cabinet and the operators' desk show the account with each zone's expected range (by
the consumption band of gateway/validation/rules.py itself), receipts, history, monthly use,
readings held, search and the audit trail; a linked Telegram chat is told its meter's last
values. These do tell earlier readings: callers must have verified who is asking (a signed-in
resident sees only their own account, a chat only the accounts linked to it; staff see any).
The registry queries that tell nothing (for senders not verified yet) are gateway/accounts.py.
Nothing here writes; readings change only through the intake and gateway/held.py.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import orjson
from sqlalchemy import exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import business
from gateway.bounds import CONTROL
from gateway.config import RuleThresholds
from gateway.held import HELD
from gateway.model import Reason, RuleGroup, Severity, Status
from gateway.privacy import mask_phone, normalize_phone
from gateway.store.rows import meter_info, state_from_row
from gateway.store.schema import accounts, audit, inbound, meter_state, meters, phones, readings
from gateway.store.schema_photos import reading_photos
from gateway.validation.context import Candidate, MeterInfo, ZoneState
from gateway.validation.rules import expected_band

_ESCAPE = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})


@dataclass(frozen=True, slots=True)
class ZoneView:
    """One zone of a meter as a resident or an operator sees it before submitting."""

    zone: str
    last_value: Decimal | None
    last_taken_at: datetime | None
    expected_low: Decimal | None = None  # the next value is expected within [low, high] ...
    expected_high: Decimal | None = None
    expected_basis: str | None = None  # ... from the usual consumption ("band") or the meter's power


@dataclass(frozen=True, slots=True)
class MeterView:
    serial: str
    model: str
    zones: tuple[str, ...]
    digits: int
    active: bool
    zone_views: tuple[ZoneView, ...]
    point: str | None = None  # a business customer's name for the metering point


@dataclass(frozen=True, slots=True)
class AccountView:
    id: int
    number: str
    address: str
    phones: tuple[str, ...]  # E.164, unmasked: callers decide what to show
    meters: tuple[MeterView, ...] = ()


@dataclass(slots=True)
class ReceiptView:
    """One submission's stored readings (all zones of one message) with its current verdict."""

    receipt: int
    account: str | None
    address: str
    meter_serial: str | None
    received_at: datetime
    taken_at: datetime | None
    channel: str
    source: str
    employee: str | None
    period: str | None
    status: Status
    reasons: list[Reason]
    values: dict[str, Decimal] = field(default_factory=dict)  # billed: registers times `ratio`
    reading_ids: dict[str, int] = field(default_factory=dict)
    committed_at: datetime | None = None
    # A meter behind instrument transformers: the registers as read, and ct x vt (gateway/ratios.py)
    raw_values: dict[str, Decimal] = field(default_factory=dict)
    ratio: Decimal | None = None
    control: bool = False  # a control reading: taken by the retailer's inspector
    photo: bool = False  # a meter photo was sent with it (gateway/photos.py)


@dataclass(frozen=True, slots=True)
class MonthlyUse:
    serial: str
    period: str
    zone: str
    kwh: Decimal


@dataclass(frozen=True, slots=True)
class AuditView:
    at: datetime
    actor: str
    action: str
    receipt: int | None
    account: str
    zone: str | None
    before: str | None
    after: str | None
    comment: str | None


def _reasons(text: str) -> list[Reason]:
    return [
        Reason(d["code"], Severity[d["severity"].upper()], d["message_ru"], d["message_en"], d.get("zone"))
        for d in orjson.loads(text)
    ]


def expected_next(
    meter: MeterInfo, zone: str, state: ZoneState, now: datetime, group: RuleGroup, limits: RuleThresholds
) -> tuple[Decimal, Decimal, str] | None:
    """The range a reading taken `now` is expected in, or None with no history to judge from.

    Where the expected-consumption band applies (enough history, long enough since the last
    reading) the range is the band; otherwise it is what the meter can count at its permitted
    power. The ends are rounded inwards to whole kWh: any value shown as expected is accepted.
    """
    if state.last_value is None or state.last_taken_at is None:
        return None
    c = Candidate(zone, state.last_value, now, "", group, meter, state, limits)
    last = state.last_value
    # The band of gateway/validation/rules.py itself; an "info" band accepts anything, so then
    # the range is the meter's.
    band = expected_band(c) if limits.band_severity != "info" else None
    if band is not None:
        used_low, used_high, _ = band
        low, high, basis = last + used_low, last + used_high, "band"
    else:
        hours = max(Decimal((now - state.last_taken_at).total_seconds()) / Decimal(3600), Decimal(0))
        low, high, basis = last, last + c.possible_kwh(hours), "power"
    low = low.quantize(Decimal(1), rounding=ROUND_CEILING)
    high = high.quantize(Decimal(1), rounding=ROUND_FLOOR)
    limit = Decimal(10) ** meter.digits
    if high >= limit:  # the counter will roll over: the range is not one interval any more
        high = limit - 1
    return low, max(low, high), basis


async def account_view(
    engine: AsyncEngine,
    number: str,
    now: datetime | None = None,
    group: RuleGroup = RuleGroup.RESIDENTS,
    limits: RuleThresholds | None = None,
) -> AccountView | None:
    """The account with its phones and meters; with `now` and `limits`, each zone's expected range."""
    async with engine.connect() as conn:
        acc = (await conn.execute(select(accounts).where(accounts.c.number == number))).first()
        if acc is None:
            return None
        phone_list = tuple(
            (
                await conn.execute(
                    select(phones.c.phone).where(phones.c.account_id == acc.id).order_by(phones.c.phone)
                )
            ).scalars()
        )
        meter_rows = (
            await conn.execute(select(meters).where(meters.c.account_id == acc.id).order_by(meters.c.serial))
        ).all()
        states: dict[tuple[int, str], ZoneState] = {}
        if meter_rows:
            for r in (
                await conn.execute(
                    select(meter_state).where(meter_state.c.meter_id.in_([m.id for m in meter_rows]))
                )
            ).mappings():
                states[(r["meter_id"], r["zone"])] = state_from_row(r)
    views = []
    for m in meter_rows:
        info = meter_info(m._mapping, acc.number)
        zone_views = []
        for zone in info.zones:
            state = states.get((m.id, zone)) or ZoneState()
            rng = (
                expected_next(info, zone, state, now, group, limits)
                if now is not None and limits is not None
                else None
            )
            zone_views.append(
                ZoneView(
                    zone,
                    state.last_value,
                    state.last_taken_at,
                    rng[0] if rng else None,
                    rng[1] if rng else None,
                    rng[2] if rng else None,
                )
            )
        views.append(
            MeterView(m.serial, m.model, info.zones, m.digits, bool(m.active), tuple(zone_views), m.point)
        )
    return AccountView(acc.id, acc.number, acc.address, phone_list, tuple(views))


def _receipt_query() -> Any:
    return (
        select(
            readings.c.id,
            readings.c.inbound_id,
            readings.c.zone,
            readings.c.value,
            readings.c.raw_value,
            readings.c.ratio,
            readings.c.taken_at,
            readings.c.received_at,
            readings.c.channel,
            readings.c.source,
            readings.c.employee,
            readings.c.period,
            readings.c.verdict,
            readings.c.reasons,
            readings.c.committed_at,
            readings.c.control,
            exists().where(reading_photos.c.inbound_id == readings.c.inbound_id).label("photo"),
            accounts.c.number,
            accounts.c.address,
            meters.c.serial,
        )
        .join(accounts, accounts.c.id == readings.c.account_id)
        .join(meters, meters.c.id == readings.c.meter_id)
    )


def _group_receipts(rows: list[Any]) -> list[ReceiptView]:
    """Reading rows (one per zone) folded into one view per receipt, in the order given."""
    out: dict[int, ReceiptView] = {}
    for r in rows:
        view = out.get(r.inbound_id)
        if view is None:
            view = out[r.inbound_id] = ReceiptView(
                receipt=r.inbound_id,
                account=r.number,
                address=r.address,
                meter_serial=r.serial,
                received_at=r.received_at,
                taken_at=r.taken_at,
                channel=r.channel,
                source=r.source,
                employee=r.employee,
                period=r.period,
                status=Status(r.verdict),
                reasons=_reasons(r.reasons),
                committed_at=r.committed_at,
                control=bool(r.control),
                photo=bool(r.photo),
            )
        view.values[r.zone] = Decimal(r.value)
        view.reading_ids[r.zone] = r.id
        if r.raw_value is not None:
            view.raw_values[r.zone] = Decimal(r.raw_value)
            view.ratio = Decimal(r.ratio)
        if r.committed_at is None:
            view.committed_at = None  # taken by billing only when every zone is
    return list(out.values())


async def receipt(engine: AsyncEngine, receipt_id: int, account: str | None = None) -> ReceiptView | None:
    """One submission with its current verdict; None if unknown or, given `account`, not its own.

    A message refused before any value could be stored (nothing that is a number) has no
    reading rows: its stored answer is shown instead.
    """
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                _receipt_query().where(readings.c.inbound_id == receipt_id).order_by(readings.c.zone)
            )
        ).all()
        if rows:
            view = _group_receipts(list(rows))[0]
            return view if account is None or view.account == account else None
        msg = (await conn.execute(select(inbound).where(inbound.c.id == receipt_id))).first()
    if msg is None:
        return None
    data = orjson.loads(msg.response)
    if account is not None and data.get("account") != account:
        return None
    return ReceiptView(
        receipt=msg.id,
        account=data.get("account"),
        address="",
        meter_serial=data.get("meter_serial"),
        received_at=msg.received_at,
        taken_at=None,
        channel=msg.channel,
        source=msg.source,
        employee=None,
        period=data.get("period"),
        status=Status(data["status"]),
        reasons=_reasons(orjson.dumps(data.get("reasons") or []).decode()),
    )


async def last_readings(engine: AsyncEngine, number: str, limit: int = 200) -> list[ReceiptView]:
    """The account's submissions that reached a meter, newest first, with verdicts and billing state."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                _receipt_query()
                .where(accounts.c.number == number)
                .order_by(readings.c.received_at.desc(), readings.c.inbound_id.desc(), readings.c.zone)
                .limit(limit * 3)
            )
        ).all()
    return _group_receipts(list(rows))[:limit]


async def readings_to_confirm(engine: AsyncEngine, number: str) -> list[ReceiptView]:
    """The account's readings waiting for the sender to confirm them, oldest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                _receipt_query()
                .where(accounts.c.number == number, readings.c.verdict == Status.NEEDS_CONFIRMATION.value)
                .order_by(readings.c.received_at, readings.c.inbound_id, readings.c.zone)
            )
        ).all()
    return _group_receipts(list(rows))


async def held_readings(engine: AsyncEngine, limit: int = 100) -> list[ReceiptView]:
    """Readings held back from billing (awaiting confirmation or the back office), oldest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                _receipt_query()
                .where(readings.c.verdict.in_(HELD))
                .order_by(readings.c.received_at, readings.c.inbound_id, readings.c.zone)
                .limit(limit * 3)
            )
        ).all()
    return _group_receipts(list(rows))[:limit]


async def monthly_consumption(
    engine: AsyncEngine, number: str, since: datetime | None = None
) -> list[MonthlyUse]:
    """kWh used per meter, zone and billing period, from accepted readings.

    A period's consumption is its last accepted value minus the previous period's last one
    (across a counter rollover, the wrapped difference); the first period seen has none.
    """
    query = (
        select(
            meters.c.serial,
            meters.c.digits,
            readings.c.zone,
            readings.c.value,
            readings.c.ratio,
            readings.c.period,
        )
        .join(meters, meters.c.id == readings.c.meter_id)
        .join(accounts, accounts.c.id == readings.c.account_id)
        .where(accounts.c.number == number, readings.c.verdict == Status.ACCEPTED.value)
        .order_by(meters.c.serial, readings.c.zone, readings.c.taken_at, readings.c.id)
    )
    if since is not None:
        query = query.where(readings.c.taken_at >= since)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    last_of: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(dict)
    wraps_at: dict[str, Decimal] = {}  # a billed value wraps at 10^digits times the meter's ratio
    for r in rows:
        last_of[(r.serial, r.zone)][r.period] = Decimal(r.value)  # ordered by time: the last wins
        wraps_at[r.serial] = Decimal(10) ** r.digits * (Decimal(r.ratio) if r.ratio else 1)
    out = []
    for (serial, zone), by_period in last_of.items():
        periods = sorted(by_period)
        for before, period in zip(periods, periods[1:], strict=False):
            used = by_period[period] - by_period[before]
            if used < 0:
                used += wraps_at[serial]
            out.append(MonthlyUse(serial, period, zone, used))
    out.sort(key=lambda u: (u.serial, u.period, u.zone))
    return out


def _like(text: str) -> str:
    return "%" + text.translate(_ESCAPE) + "%"


async def find_accounts(engine: AsyncEngine, query: str, limit: int = 20) -> list[AccountView]:
    """Accounts by number (exact or prefix), phone (full or last digits) or part of the address;
    business customers' by contract number, INN or part of the name too (gateway/business.py)."""
    # Control characters (a NUL above all, which PostgreSQL refuses in text) are in no account.
    q = " ".join(CONTROL.sub(" ", query).split())[:100]
    if not q:
        return []
    digits = re.sub(r"\D", "", q)
    conditions = []
    if re.fullmatch(r"[\d\s()+-]+", q) and digits:
        conditions.append(accounts.c.number == digits)
        if len(digits) >= 4:
            conditions.append(accounts.c.number.like(digits + "%"))
        if len(digits) >= 10:  # a whole number, in any written form
            owners = select(phones.c.account_id).where(phones.c.phone == normalize_phone(q))
            conditions.append(accounts.c.id.in_(owners))
        elif len(digits) >= 4:  # the last digits of a phone
            owners = select(phones.c.account_id).where(phones.c.phone.like("%" + digits))
            conditions.append(accounts.c.id.in_(owners))
    else:
        # SQLite folds only ASCII case: also try the forms people type Cyrillic in.
        variants = {q, q.lower(), q.capitalize(), q.title()}
        conditions.extend(accounts.c.address.like(_like(v), escape="\\") for v in variants)
        conditions.append(func.lower(accounts.c.address).like(_like(q.lower()), escape="\\"))
    conditions += business.search_conditions(q)
    async with engine.connect() as conn:
        acc_rows = (
            await conn.execute(
                select(accounts).where(or_(*conditions)).order_by(accounts.c.number).limit(limit)
            )
        ).all()
        if not acc_rows:
            return []
        by_id: dict[int, list[str]] = defaultdict(list)
        for account_id, phone in (
            await conn.execute(
                select(phones.c.account_id, phones.c.phone).where(
                    phones.c.account_id.in_([a.id for a in acc_rows])
                )
            )
        ).all():
            by_id[account_id].append(phone)
    return [AccountView(a.id, a.number, a.address, tuple(sorted(by_id[a.id]))) for a in acc_rows]


async def audit_trail(engine: AsyncEngine, number: str | None = None, limit: int = 50) -> list[AuditView]:
    """Changes made to stored readings (confirmations, reviews), newest first."""
    query = (
        select(
            audit.c.at,
            audit.c.actor,
            audit.c.action,
            audit.c.before,
            audit.c.after,
            audit.c.comment,
            readings.c.inbound_id,
            readings.c.zone,
            accounts.c.number,
        )
        .join(readings, readings.c.id == audit.c.reading_id)
        .join(accounts, accounts.c.id == readings.c.account_id)
        .order_by(audit.c.at.desc(), audit.c.id.desc())
        .limit(limit)
    )
    if number is not None:
        query = query.where(accounts.c.number == number)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        AuditView(
            r.at,
            r.actor,
            r.action,
            r.inbound_id,
            r.number,
            r.zone,
            _verdict_in(r.before),
            _verdict_in(r.after),
            r.comment,
        )
        for r in rows
    ]


def _verdict_in(snapshot: str | None) -> str | None:
    if not snapshot:
        return None
    try:
        return str(orjson.loads(snapshot).get("verdict"))
    except (orjson.JSONDecodeError, AttributeError):
        return snapshot


def masked_phones(view: AccountView) -> str:
    """The account's phones as staff may see them on screen."""
    return ", ".join(mask_phone(p) for p in view.phones)


@dataclass(frozen=True, slots=True)
class LastValue:
    """The value a zone's next reading is judged against, and when it was taken."""

    zone: str
    value: Decimal
    taken_at: datetime


async def last_values(engine: AsyncEngine, meter_serial: str) -> dict[str, LastValue]:
    """Per zone of the meter, its last value; zones never read are absent."""
    query = (
        select(meter_state.c.zone, meter_state.c.last_value, meter_state.c.last_taken_at)
        .join(meters, meters.c.id == meter_state.c.meter_id)
        .where(meters.c.serial == meter_serial, meter_state.c.last_value.is_not(None))
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {r.zone: LastValue(r.zone, Decimal(r.last_value), r.last_taken_at) for r in rows}
