"""The intake's SQL: the rows one group reads and writes, on PostgreSQL and on SQLite.

`gateway/decide.py` holds the rules of deciding a group; this module holds how its rows are
fetched and stored: the dedupe lookup of messages already stored, the registry's meters and
phones, the zone states (locked FOR UPDATE on PostgreSQL), the inserts of inbound messages and
readings, and the states written back. On SQLite the statements of every group go straight
through the driver (`_sqlite_rows`, `_sqlite_executemany`): SQLAlchemy's execution machinery
and parameter processing cost a fifth of the writer's time there. Every function takes either
connection of gateway/store/sync_bridge.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import DateTime, Table, and_, bindparam, insert, or_, select, text, update
from sqlalchemy.sql.dml import Insert, Update

from gateway.model import ReadingOut, Reason, Severity, Status, Verdict
from gateway.store.rows import METER_INFO_COLUMNS, STATE_COLUMNS, meter_info, sqlite_time, state_from_values
from gateway.store.schema import (
    account_emails,
    accounts,
    inbound,
    meter_state,
    meters,
    phones,
    readings,
    registry_version,
)
from gateway.store.sync_bridge import Conn, SyncConnection
from gateway.validation.context import MeterInfo, ZoneState


async def stored_answers(conn: Conn, by_channel: dict[str, list[str]]) -> Sequence[Any]:
    """`(id, channel, channel_message_id, response)` of the messages already stored under these
    channel message ids (by channel).

    One `channel = ? AND channel_message_id IN (...)` per channel (on PostgreSQL, for the
    usual single channel, a join of the ids' array to the table: `_PG_REPLAY_ONE_CHANNEL` says
    why): the unique index (channel, channel_message_id) serves it on both databases, whereas a
    row-value `(channel, id) IN ((...), ...)` scans the whole table on SQLite and plans badly
    on PostgreSQL, getting slower as `inbound` grows."""
    if len(by_channel) == 1 and conn.dialect.name == "sqlite":  # the usual case, every group
        ((ch, mids),) = by_channel.items()
        sql = _SQLITE_REPLAY_ONE_CHANNEL.format(marks=",".join("?" * len(mids)))
        return await _sqlite_rows(conn, sql, (ch, *mids))
    if len(by_channel) == 1:
        ((ch, mids),) = by_channel.items()
        return (await conn.execute(_PG_REPLAY_ONE_CHANNEL, {"ch": ch, "mids": mids})).all()
    where = or_(
        *(
            and_(inbound.c.channel == ch, inbound.c.channel_message_id.in_(ids))
            for ch, ids in by_channel.items()
        )
    )
    return (await conn.execute(_REPLAY_COLUMNS.where(where))).all()


async def reading_ids(conn: Conn, inbound_ids: list[int]) -> dict[int, dict[str, int]]:
    """The ids of these inbound messages' readings: inbound id -> zone -> reading id."""
    found: dict[int, dict[str, int]] = {}
    for rr in (await conn.execute(_REPLAY_READINGS, {"ids": inbound_ids})).all():
        found.setdefault(rr.inbound_id, {})[rr.zone] = rr.id
    return found


async def phone_accounts(conn: Conn, phone_list: list[str]) -> Sequence[Any]:
    """`(phone, number)`: the accounts each of these (normalised) phones is registered for."""
    return (await conn.execute(_PHONE_ACCOUNTS, {"phones": phone_list})).all()


async def email_accounts(conn: Conn, emails: list[str]) -> Sequence[Any]:
    """`(email, number)`: the accounts each of these (lower-case) e-mail addresses is registered for."""
    return (await conn.execute(_EMAIL_ACCOUNTS, {"emails": emails})).all()


async def current_registry_version(conn: Conn) -> Any:
    """The registry's version (None: never imported), to tell whether cached meters still hold."""
    if conn.dialect.name == "sqlite":
        return (await _sqlite_rows(conn, _SQLITE_REGISTRY_VERSION, ()) or [(None,)])[0][0]
    return (await conn.execute(_REGISTRY_VERSION)).scalar()


async def meters_of(conn: Conn, serials: list[str], numbers: list[str]) -> list[MeterInfo]:
    """The meters of these serials and of these accounts (at least one list is not empty)."""
    if serials and numbers:
        query, params = _METERS_BY_EITHER, {"serials": serials, "numbers": numbers}
    elif serials:
        query, params = _METERS_BY_SERIAL, {"serials": serials}
    else:
        query, params = _METERS_BY_NUMBER, {"numbers": numbers}
    return [meter_info(r._mapping, r.number) for r in (await conn.execute(query, params)).all()]


async def existing_accounts(conn: Conn, numbers: list[str]) -> set[str]:
    """Which of these account numbers are in the registry."""
    return set((await conn.execute(_ACCOUNT_NUMBERS, {"numbers": numbers})).scalars())


async def data_version(conn: Conn) -> Any:
    """SQLite's `PRAGMA data_version`: changes when another connection commits."""
    ((version,),) = await _sqlite_rows(conn, "PRAGMA data_version", ())
    return version


async def read_states(conn: Conn, meter_ids: set[int], postgres: bool) -> dict[tuple[int, str], ZoneState]:
    """The stored zone states of these meters: (meter id, zone) -> state."""
    # PostgreSQL: another gateway process may be deciding a reading of the same meter right
    # now, hence FOR UPDATE there.
    if postgres:
        result = await conn.execute(_STATES_FOR_UPDATE, {"meter_ids": list(meter_ids)})
        return {(r[0], r[1]): state_from_values(r[2:]) for r in result}
    # SQLite: straight from the driver; SQLAlchemy's processing of the three time columns
    # cost more than the query.
    sql = _SQLITE_STATES.format(marks=",".join("?" * len(meter_ids)))
    rows = await _sqlite_rows(conn, sql, tuple(meter_ids))
    return {(r[0], r[1]): state_from_values(r[2:], sqlite_time) for r in rows}


async def set_response(conn: Conn, inbound_id: int, response: str) -> None:
    """Replace the stored answer of an inbound message."""
    await conn.execute(update(inbound).where(inbound.c.id == inbound_id).values(response=response))


async def insert_many(conn: Conn, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert `rows` in one executemany; returns their new ids in the order of `rows`."""
    if conn.dialect.name != "sqlite":
        result = await conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
        return list(result.scalars().all())
    # SQLAlchemy cannot batch INSERT .. RETURNING with sort_by_parameter_order on SQLite: it sends
    # one statement per row, the biggest cost of a group. Every SQLite transaction here starts
    # with BEGIN IMMEDIATE, so we hold the write lock and may hand out the ids ourselves: max + 1
    # on, exactly what SQLite would pick for an INTEGER PRIMARY KEY without AUTOINCREMENT.
    ((last,),) = await _sqlite_rows(conn, _SQLITE_MAX_ID[table.name], ())
    first = (last or 0) + 1
    ids = list(range(first, first + len(rows)))
    for row, new_id in zip(rows, ids, strict=True):
        row["id"] = new_id
    await _sqlite_executemany(conn, _INSERT[table.name], rows)
    return ids


# Statements with a fixed shape, built once (lists go through expanding bind parameters).
_INSERT = {t.name: insert(t) for t in (inbound, readings)}
# SQLite runs the statements of every group straight through the driver (see _sqlite_rows):
# SQLAlchemy's execution machinery cost about a millisecond a group, a fifth of a small group.
_SQLITE_MAX_ID = {t.name: f"SELECT max(id) FROM {t.name}" for t in (inbound, readings)}
_SQLITE_REGISTRY_VERSION = "SELECT version FROM registry_version"
_SQLITE_REPLAY_ONE_CHANNEL = (
    "SELECT id, channel, channel_message_id, response FROM inbound"
    " WHERE channel = ? AND channel_message_id IN ({marks})"
)
_REPLAY_COLUMNS = select(inbound.c.id, inbound.c.channel, inbound.c.channel_message_id, inbound.c.response)
# PostgreSQL: the ids as one array joined to the unique index. asyncpg prepares statements and
# PostgreSQL plans one generically after five runs; for `channel_message_id IN ($2 ... $1001)`
# that plan scanned the channel's whole index range and filtered by the list, so groups got
# slower as `inbound` grew (a 100,000-row partner file: 96 s instead of 25 s). A join to
# `unnest` is planned as an index lookup per id, generic or not.
_PG_REPLAY_ONE_CHANNEL = text(
    "SELECT i.id, i.channel, i.channel_message_id, i.response"
    " FROM unnest(CAST(:mids AS varchar[])) AS m(id)"
    " JOIN inbound AS i ON i.channel = :ch AND i.channel_message_id = m.id"
)
_REPLAY_READINGS = select(readings.c.inbound_id, readings.c.zone, readings.c.id).where(
    readings.c.inbound_id.in_(bindparam("ids", expanding=True))
)
_PHONE_ACCOUNTS = (
    select(phones.c.phone, accounts.c.number)
    .join(accounts, accounts.c.id == phones.c.account_id)
    .where(phones.c.phone.in_(bindparam("phones", expanding=True)))
)
_EMAIL_ACCOUNTS = (
    select(account_emails.c.email, accounts.c.number)
    .join(accounts, accounts.c.id == account_emails.c.account_id)
    .where(account_emails.c.email.in_(bindparam("emails", expanding=True)))
)
_METERS = select(meters.c.id, meters.c.account_id, accounts.c.number, *METER_INFO_COLUMNS).join(
    accounts, accounts.c.id == meters.c.account_id
)
_BY_SERIAL = meters.c.serial.in_(bindparam("serials", expanding=True))
_BY_NUMBER = accounts.c.number.in_(bindparam("numbers", expanding=True))
_METERS_BY_SERIAL = _METERS.where(_BY_SERIAL)
_METERS_BY_NUMBER = _METERS.where(_BY_NUMBER)
_METERS_BY_EITHER = _METERS.where(or_(_BY_SERIAL, _BY_NUMBER))
_ACCOUNT_NUMBERS = select(accounts.c.number).where(_BY_NUMBER)
_REGISTRY_VERSION = select(registry_version.c.version)
_STATE_SELECT = ("meter_id", "zone", *STATE_COLUMNS)
_STATES_FOR_UPDATE = (
    select(*(meter_state.c[name] for name in _STATE_SELECT))
    .where(meter_state.c.meter_id.in_(bindparam("meter_ids", expanding=True)))
    .order_by(meter_state.c.meter_id, meter_state.c.zone)  # locks taken in one order: no deadlocks
    .with_for_update()
)
_SQLITE_STATES = f"SELECT {', '.join(_STATE_SELECT)} FROM meter_state WHERE meter_id IN ({{marks}})"
_SAVE_STATE = (
    update(meter_state)
    .where(meter_state.c.meter_id == bindparam("k_meter"), meter_state.c.zone == bindparam("k_zone"))
    .values(
        last_value=bindparam("last_value"),
        last_taken_at=bindparam("last_taken_at"),
        last_receipt=bindparam("last_receipt"),
        last_period=bindparam("last_period"),
        total_kwh=bindparam("total_kwh"),
        total_days=bindparam("total_days"),
        dev_value=bindparam("dev_value"),
        dev_taken_at=bindparam("dev_taken_at"),
        res_value=bindparam("res_value"),
        res_taken_at=bindparam("res_taken_at"),
        ctl_value=bindparam("ctl_value"),
        ctl_taken_at=bindparam("ctl_taken_at"),
    )
)
# (statement, parameter names of the rows) -> (SQL text, parameter names in placeholder order,
# placeholder positions of datetime columns)
_SQLITE_SQL: dict[tuple[int, tuple[str, ...]], tuple[str, tuple[str, ...], tuple[int, ...]]] = {}


def _is_datetime_type(type_: Any) -> bool:
    # A TypeDecorator (UtcDateTime) says nothing of its python_type: look at what it wraps.
    return isinstance(getattr(type_, "impl_instance", type_), DateTime)


async def _sqlite_executemany(conn: Conn, stmt: Insert | Update, rows: list[dict[str, Any]]) -> None:
    """SQLite: executemany of a module-level INSERT/UPDATE straight through the driver.

    SQLAlchemy processes every parameter of every row (about 7 datetime conversions a reading),
    a fifth of the writer's time on SQLite; here the SQL is compiled once and rows go as tuples.
    The rows hold only text, integers, None and aware datetimes; a datetime becomes exactly the
    text SQLAlchemy's SQLite DateTime stores for UtcDateTime (UTC, no zone,
    'YYYY-MM-DD HH:MM:SS.ffffff'), so it reads back through UtcDateTime unchanged.
    """
    names = tuple(rows[0])
    key = (id(stmt), names)  # only module-level statements come here, so id() is stable
    hit = _SQLITE_SQL.get(key)
    if hit is None:
        compiled = stmt.compile(dialect=conn.dialect, column_keys=list(names))
        positions = tuple(compiled.positiontup or ())
        dates = tuple(i for i, n in enumerate(positions) if _is_datetime_type(compiled.binds[n].type))
        hit = _SQLITE_SQL[key] = (compiled.string, positions, dates)
    sql, order, dates = hit
    values_of = itemgetter(*order)
    texts: dict[datetime, str] = {}  # a group's readings share received_at and due_at

    def param(value: datetime) -> str:
        text = texts.get(value)
        if text is None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given where an aware UTC one is required")
            text = texts[value] = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return text

    params: list[tuple[Any, ...]] = []
    for row in rows:
        values = values_of(row)
        if len(order) == 1:
            values = (values,)
        if dates:
            values = list(values)
            for i in dates:
                if values[i] is not None:
                    values[i] = param(values[i])
            values = tuple(values)
        params.append(values)
    if isinstance(conn, SyncConnection):  # the writer process: no SQLAlchemy execution around it
        conn.sync.connection.driver_connection.executemany(sql, params)  # type: ignore[union-attr]
    else:
        await conn.exec_driver_sql(sql, params)


async def _sqlite_rows(conn: Conn, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """SQLite: the rows of a query as the driver gives them (tuples, times as text)."""
    if isinstance(conn, SyncConnection):  # the writer thread: no result wrapping at all
        cursor = conn.sync.connection.driver_connection.execute(sql, params)  # type: ignore[union-attr]
        return list(cursor.fetchall())
    return [tuple(r) for r in (await conn.exec_driver_sql(sql, params)).all()]


async def save_states(conn: Conn, touched: dict[tuple[int, str], ZoneState]) -> None:
    """Write zone states back in one executemany."""
    if not touched:
        return
    rows = [
        {
            "k_meter": meter_id,
            "k_zone": zone,
            "last_value": _str(s.last_value),
            "last_taken_at": s.last_taken_at,
            "last_receipt": s.last_receipt,
            "last_period": s.last_period,
            "total_kwh": str(s.total_kwh),
            "total_days": str(s.total_days),
            "dev_value": _str(s.dev_value),
            "dev_taken_at": s.dev_taken_at,
            "res_value": _str(s.res_value),
            "res_taken_at": s.res_taken_at,
            "ctl_value": _str(s.ctl_value),
            "ctl_taken_at": s.ctl_taken_at,
        }
        for (meter_id, zone), s in touched.items()
    ]
    if conn.dialect.name == "sqlite":
        await _sqlite_executemany(conn, _SAVE_STATE, rows)  # see there why
    else:
        await conn.execute(_SAVE_STATE, rows)


def _str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def verdict_from_json(
    text: str, receipt: int, reading_ids: dict[str, int], duplicate: bool = False
) -> Verdict:
    """Rebuild a stored answer (for redelivered messages)."""
    data = orjson.loads(text)
    reasons = tuple(
        Reason(
            code=r["code"],
            severity=Severity[r["severity"].upper()],
            message_ru=r["message_ru"],
            message_en=r["message_en"],
            zone=r.get("zone"),
        )
        for r in data["reasons"]
    )
    values = data.get("values") or {}
    return Verdict(
        status=Status(data["status"]),
        reasons=reasons,
        receipt=data.get("duplicate_of") or receipt,
        account=data.get("account"),
        meter_serial=data.get("meter_serial"),
        period=data.get("period"),
        readings=tuple(ReadingOut(reading_ids.get(z), z, Decimal(v)) for z, v in values.items()),
        duplicate=duplicate,
    )
