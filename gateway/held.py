"""Readings held back from billing: the sender confirms a value, the back office decides the rest.

A reading that `needs_confirmation` (consumption far from this meter's usual) becomes accepted
when its sender confirms it: it is judged again against the zone's current history with the
expected-consumption band waived, since the sender has vouched for the value. A `flagged` one (or
any held reading) is accepted or rejected by an employee with a comment. Every change is written
to `audit` with who, when, before and after; nothing is deleted.

No held reading waits forever (gateway/held_job.py drives this on a clock): an unanswered
request to confirm is `escalate`d to the back office (flagged, audit action "escalated"), and a
reading still held when its period closes is `expire`d (rejected with reason code "expired",
audit action "expired"), with an "expired" notice to its sender written in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.bounds import CONTROL
from gateway.config import Config
from gateway.model import CHANNEL_GROUP, Channel, ReadingOut, Reason, RuleGroup, Severity, Status, Verdict
from gateway.store.intake_rows import save_states
from gateway.store.rows import METER_INFO_COLUMNS, meter_info, state_from_row
from gateway.store.schema import accounts, audit, meter_state, meters, readings
from gateway.store.schema_held import FANOUT, notices
from gateway.validation.context import MeterInfo, ZoneState, advance_state
from gateway.validation.evaluate import evaluate
from gateway.validation.explain import reason

HELD = (Status.NEEDS_CONFIRMATION.value, Status.FLAGGED.value)


class NotHeld(LookupError):
    """No reading with that receipt, or it belongs to someone else."""


@dataclass(frozen=True, slots=True)
class Decision:
    accept: bool
    actor: str
    comment: str = ""


async def confirm(
    engine: AsyncEngine, config: Config, receipt: int, actor: str, now: datetime, account: str | None = None
) -> Verdict:
    """The sender vouches for a value that needed confirmation; returns the new verdict.

    `account`, when given, must own the reading (a resident can only confirm their own). A second
    confirmation answers the current verdict again.
    """
    async with engine.begin() as conn:
        rows, meter = await _load(conn, receipt, account, for_update=engine.dialect.name == "postgresql")
        if rows[0]["verdict"] != Status.NEEDS_CONFIRMATION.value:
            return _verdict(rows, meter)
        channel = Channel(rows[0]["channel"])
        group = CHANNEL_GROUP[channel]
        limits = getattr(config.validation, group.value).model_copy(update={"band_severity": "info"})
        states = await _states(conn, meter)
        # judged again from the registers as sent: evaluate() applies the meter's ratio itself
        values = {r["zone"]: r["raw_value"] or r["value"] for r in rows}
        taken_at = rows[0]["taken_at"]
        ev = evaluate(
            meter=meter,
            values=values,
            taken_at=taken_at,
            now=taken_at,  # judged as of when it was taken: confirming late must not make it "too old"
            period=rows[0]["period"],
            period_note=None,
            group=group,
            limits=limits,
            states=states,
            control=bool(rows[0]["control"]),
        )
        found = [r for r in ev.reasons if r.code != "unexpected_consumption"]
        found.append(
            reason("confirmed", Severity.INFO, "Показания подтверждены, приняты", f"confirmed by {actor}")
        )
        status = Status.REJECTED if ev.status is Status.REJECTED else Status.ACCEPTED
        await _set(conn, rows, meter, status, found, actor, "confirm", "", now, states, group, ev.consumption)
        rows, meter = await _load(conn, receipt, account, for_update=False)
        return _verdict(rows, meter)


async def review(engine: AsyncEngine, receipt: int, decision: Decision, now: datetime) -> Verdict:
    """An employee accepts or rejects a held reading, with a comment kept in the audit trail."""
    # Control characters (a NUL above all, which PostgreSQL refuses in text) are in no comment.
    decision = replace(decision, comment=" ".join(CONTROL.sub(" ", decision.comment).split()))
    async with engine.begin() as conn:
        rows, meter = await _load(conn, receipt, None, for_update=engine.dialect.name == "postgresql")
        if rows[0]["verdict"] not in HELD:
            raise NotHeld(f"receipt {receipt} is {rows[0]['verdict']}, not held")
        group = CHANNEL_GROUP[Channel(rows[0]["channel"])]
        states = await _states(conn, meter)
        old = [_reason_from(d) for d in orjson.loads(rows[0]["reasons"])]
        if decision.accept:
            note = reason(
                "released", Severity.INFO, "Принято после проверки", f"accepted by {decision.actor}"
            )
            status = Status.ACCEPTED
        else:
            note = reason(
                "rejected_by_operator",
                Severity.REJECT,
                f"Отклонено после проверки: {decision.comment}"[:70],
                f"rejected by {decision.actor}: {decision.comment}",
            )
            status = Status.REJECTED
        consumption: dict[str, Decimal | None] = {}
        for r in rows:
            state = states[r["zone"]]
            if state.last_value is not None and Decimal(r["value"]) >= state.last_value:
                consumption[r["zone"]] = Decimal(r["value"]) - state.last_value
        await _set(
            conn,
            rows,
            meter,
            status,
            [*old, note],
            decision.actor,
            "review",
            decision.comment,
            now,
            states,
            group,
            consumption,
        )
        rows, meter = await _load(conn, receipt, None, for_update=False)
        return _verdict(rows, meter)


JOB = "held-job"  # the actor the lifecycle job writes into the audit trail


async def escalate(engine: AsyncEngine, receipt: int, now: datetime, why: str) -> bool:
    """An unanswered request to confirm goes to the back office; False if it was decided meanwhile."""
    async with engine.begin() as conn:
        rows, meter = await _load(conn, receipt, None, for_update=engine.dialect.name == "postgresql")
        if rows[0]["verdict"] != Status.NEEDS_CONFIRMATION.value:
            return False
        old = [_reason_from(d) for d in orjson.loads(rows[0]["reasons"])]
        note = reason(
            "escalated",
            Severity.FLAG,
            "Показания не подтверждены, их проверит специалист",
            f"not confirmed by the sender: escalated to the back office ({why})",
        )
        group = CHANNEL_GROUP[Channel(rows[0]["channel"])]
        await _set(conn, rows, meter, Status.FLAGGED, [*old, note], JOB, "escalated", why, now, {}, group, {})
        return True


async def expire(engine: AsyncEngine, receipt: int, now: datetime) -> bool:
    """A reading still held when its period closed is rejected as expired and its sender is told
    (an "expired" notice in the same transaction); False if it was decided meanwhile."""
    async with engine.begin() as conn:
        rows, meter = await _load(conn, receipt, None, for_update=engine.dialect.name == "postgresql")
        if rows[0]["verdict"] not in HELD:
            return False
        old = [_reason_from(d) for d in orjson.loads(rows[0]["reasons"])]
        note = reason(
            "expired",
            Severity.REJECT,
            "Период закрыт, а показания не были подтверждены: не учтены",
            f"the period {rows[0]['period']} closed while the reading was still {rows[0]['verdict']}",
        )
        group = CHANNEL_GROUP[Channel(rows[0]["channel"])]
        comment = f"period {rows[0]['period']} closed"
        await _set(
            conn, rows, meter, Status.REJECTED, [*old, note], JOB, "expired", comment, now, {}, group, {}
        )
        await conn.execute(
            insert(notices).values(
                receipt=receipt, kind="expired", channel=FANOUT, recipient="", created_at=now, attempts=0
            )
        )
        return True


async def _load(
    conn: AsyncConnection, receipt: int, account: str | None, for_update: bool
) -> tuple[list[Any], MeterInfo]:
    query = (
        select(readings, accounts.c.number, *METER_INFO_COLUMNS)
        .join(accounts, accounts.c.id == readings.c.account_id)
        .join(meters, meters.c.id == readings.c.meter_id)
        .where(readings.c.inbound_id == receipt)
        .order_by(readings.c.zone)
    )
    if for_update:
        query = query.with_for_update(of=readings)
    rows = list((await conn.execute(query)).mappings())
    if not rows or (account is not None and rows[0]["number"] != account):
        raise NotHeld(f"no reading with receipt {receipt}")
    first = rows[0]
    meter = meter_info(first, first["number"], meter_id_key="meter_id")
    return rows, meter


async def _states(conn: AsyncConnection, meter: MeterInfo) -> dict[str, ZoneState]:
    query = select(meter_state).where(meter_state.c.meter_id == meter.id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return {r["zone"]: state_from_row(r) for r in (await conn.execute(query)).mappings()}


async def _set(
    conn: AsyncConnection,
    rows: list[Any],
    meter: MeterInfo,
    status: Status,
    found: list[Reason],
    actor: str,
    action: str,
    comment: str,
    now: datetime,
    states: dict[str, ZoneState],
    group: RuleGroup,
    consumption: dict[str, Decimal | None],
) -> None:
    reasons_json = orjson.dumps([r.as_dict() for r in found]).decode()
    for r in rows:
        await conn.execute(
            update(readings)
            .where(readings.c.id == r["id"])
            .values(verdict=status.value, reasons=reasons_json)
        )
        await conn.execute(
            insert(audit).values(
                at=now,
                actor=actor[:128],
                reading_id=r["id"],
                action=action,
                before=orjson.dumps(
                    {"verdict": r["verdict"], "reasons": orjson.loads(r["reasons"])}
                ).decode(),
                after=orjson.dumps({"verdict": status.value, "reasons": orjson.loads(reasons_json)}).decode(),
                comment=comment or None,
            )
        )
    if status is not Status.ACCEPTED:
        return
    touched = {}
    for r in rows:
        state = states[r["zone"]]
        # Only a reading newer than the zone's last one moves the history on.
        if state.last_taken_at is None or r["taken_at"] > state.last_taken_at:
            advance_state(
                state,
                Decimal(r["value"]),
                r["taken_at"],
                r["period"],
                group,
                consumption.get(r["zone"]),
                None,
                bool(r["control"]),
            )
            state.last_receipt = r["inbound_id"]
            touched[(meter.id, r["zone"])] = state
    await save_states(conn, touched)


def _reason_from(d: dict[str, Any]) -> Reason:
    return Reason(d["code"], Severity[d["severity"].upper()], d["message_ru"], d["message_en"], d.get("zone"))


def _verdict(rows: list[Any], meter: MeterInfo) -> Verdict:
    first = rows[0]
    return Verdict(
        status=Status(first["verdict"]),
        reasons=tuple(_reason_from(d) for d in orjson.loads(first["reasons"])),
        receipt=first["inbound_id"],
        account=meter.account,
        meter_serial=meter.serial,
        period=first["period"],
        readings=tuple(ReadingOut(r["id"], r["zone"], Decimal(r["value"])) for r in rows),
    )
