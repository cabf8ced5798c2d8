"""The registry: accounts, their meters and the phones and e-mails allowed to submit for them.

Loaded from the retailer's CSV (`meter-gateway import registry FILE.csv`, format in
the README's "Registry CSV"). Each refused row is reported with its line number and reason; a re-import
updates what changed and never duplicates.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Table, and_, bindparam, delete, insert, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import business, ratios
from gateway.bounds import CONTROL
from gateway.config import DEFAULT_BRANCH
from gateway.privacy import normalize_email, normalize_phone
from gateway.store.schema import account_emails, accounts, meter_state, meters, phones, registry_version

COLUMNS = ("account", "meter_serial", "meter_model", "zones", "digits", "phones", "max_power_kw", "address")
OPTIONAL = ("active", "timezone", "branch", "ct_ratio", "vt_ratio", "emails", *business.BUSINESS_COLUMNS)
ZONE_SETS = {"T": ("T",), "T1;T2": ("T1", "T2"), "T1;T2;T3": ("T1", "T2", "T3")}
_ACCOUNT = re.compile(r"^\d{4,16}$")
_SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
_E164 = re.compile(r"^\+\d{10,15}$")
_EMAIL = re.compile(r"^[^@\s;,<>\"()\[\]]{1,64}@(?:[\w-]{1,63}\.)+[\w-]{2,63}$")
T = TypeVar("T")
_IMPORT_LOCK = 0x6D67_7265_6769  # PostgreSQL advisory lock key of registry imports ("mgregi")


@dataclass(frozen=True, slots=True)
class RegistryRow:
    line: int
    account: str
    serial: str
    model: str
    zones: tuple[str, ...]
    digits: int
    phones: tuple[str, ...]
    max_power_kw: Decimal | None
    address: str
    active: bool
    timezone: str | None = None  # the resident's zone when it differs from the branch's
    branch: str | None = None  # [branches.<id>]; None: the default branch ([calendar])
    ct_ratio: Decimal | None = None  # current transformer's ratio (gateway/ratios.py); None: none
    vt_ratio: Decimal | None = None  # voltage transformer's ratio; None: none
    emails: tuple[str, ...] = ()  # addresses allowed to submit by e-mail (adapters/mail/), lower case
    point: str | None = None  # a business customer's name for the metering point
    business: business.BusinessRow | None = None  # a legal entity's or entrepreneur's contract


@dataclass
class ImportReport:
    """What an import did, row by row where something was refused."""

    added: int = 0
    changed: int = 0
    unchanged: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"added {self.added}, changed {self.changed}, unchanged {self.unchanged}, refused {len(self.refused)}"
        ]
        lines += [f"line {line}: {why}" for line, why in self.refused]
        return "\n".join(lines)


def parse_rows(text: str, branches: Collection[str] = ()) -> tuple[list[RegistryRow], list[tuple[int, str]]]:
    """Check every row of a registry CSV; return the good rows and (line, reason) for the rest.
    `branches`: the ids of `[branches.<id>]` a row's `branch` may name."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        return [], [(1, f"header lacks column(s): {', '.join(missing)}; expected {','.join(COLUMNS)}")]
    unknown = [c for c in header if c not in COLUMNS + OPTIONAL]
    if unknown:
        return [], [(1, f"unknown column(s): {', '.join(unknown)}")]
    rows: list[RegistryRow] = []
    refused: list[tuple[int, str]] = []
    seen_serials: dict[str, int] = {}
    contracts: dict[str, str] = {}  # contract number (as looked up) -> the account it is given to
    for raw in reader:
        line = reader.line_num
        if None in raw:
            refused.append((line, "more fields than the header has"))
            continue
        row = {k.strip(): (v or "").strip() for k, v in raw.items()}
        try:
            parsed = _parse_row(line, row, branches)
        except ValueError as exc:
            refused.append((line, str(exc)))
            continue
        if parsed.serial in seen_serials:
            refused.append(
                (line, f"meter {parsed.serial} already given on line {seen_serials[parsed.serial]}")
            )
            continue
        if parsed.business is not None:
            holder = contracts.setdefault(business.contract_key(parsed.business.contract), parsed.account)
            if holder != parsed.account:
                refused.append((line, f"contract {parsed.business.contract!r} is already account {holder}'s"))
                continue
        seen_serials[parsed.serial] = line
        rows.append(parsed)
    return rows, refused


def _parse_row(line: int, row: dict[str, str], branches: Collection[str]) -> RegistryRow:
    account = row["account"]
    if not _ACCOUNT.match(account):
        raise ValueError(f"account {account!r} is not 4-16 digits")
    serial = row["meter_serial"]
    if not _SERIAL.match(serial):
        raise ValueError(
            f"meter_serial {serial!r} is empty or has characters other than letters, digits, . _ / -"
        )
    zones = ZONE_SETS.get(row["zones"].upper().replace(" ", "").replace("Т", "T"))
    if zones is None:
        raise ValueError(f"zones {row['zones']!r} is not one of T, T1;T2, T1;T2;T3")
    try:
        digits = int(row["digits"])
    except ValueError:
        raise ValueError(f"digits {row['digits']!r} is not a whole number") from None
    if not 4 <= digits <= 10:
        raise ValueError(f"digits {digits} is outside 4..10")
    phone_list = []
    for p in filter(None, (x.strip() for x in row["phones"].split(";"))):
        if not _E164.match(p):
            raise ValueError(f"phone {p!r} is not in E.164 form like +79161234567")
        phone_list.append(normalize_phone(p))
    power: Decimal | None = None
    if row["max_power_kw"]:
        try:
            power = Decimal(row["max_power_kw"].replace(",", "."))
        except InvalidOperation:
            raise ValueError(f"max_power_kw {row['max_power_kw']!r} is not a number") from None
        if not power.is_finite() or power <= 0 or power > 100000:
            raise ValueError(f"max_power_kw {row['max_power_kw']!r} must be above 0 and at most 100000")
    zone = row.get("timezone") or None
    if zone is not None:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {zone!r} is not an IANA time zone like Asia/Yekaterinburg") from None
    branch = row.get("branch") or None
    if branch == DEFAULT_BRANCH:
        branch = None
    elif branch is not None and branch not in branches:
        known = ", ".join(sorted(branches)) or "none besides default"
        raise ValueError(f"branch {branch!r} is not configured ([branches.<id>]: {known})")
    email_list = []
    for e in filter(None, (x.strip() for x in row.get("emails", "").split(";"))):
        if len(e) > 254 or not _EMAIL.match(e):
            raise ValueError(f"email {e!r} is not an address like ivan@mail.ru")
        email_list.append(normalize_email(e))
    ct_ratio = ratios.parse_ratio(row.get("ct_ratio", ""), "ct_ratio")
    vt_ratio = ratios.parse_ratio(row.get("vt_ratio", ""), "vt_ratio")
    ratios.product(ct_ratio, vt_ratio)  # ValueError when the two together are out of bounds
    active_text = row.get("active", "1").lower() or "1"
    if active_text not in ("1", "0", "true", "false", "yes", "no"):
        raise ValueError(f"active {active_text!r} is not 1 or 0")
    point = " ".join(row.get("point", "").split())
    if len(point) > 128 or CONTROL.search(point):
        raise ValueError("point: the metering point's name, at most 128 characters")
    return RegistryRow(
        line=line,
        account=account,
        serial=serial,
        model=row["meter_model"],
        zones=zones,
        digits=digits,
        phones=tuple(dict.fromkeys(phone_list)),
        max_power_kw=power,
        address=row["address"],
        active=active_text in ("1", "true", "yes"),
        timezone=zone,
        branch=branch,
        ct_ratio=ct_ratio,
        vt_ratio=vt_ratio,
        emails=tuple(dict.fromkeys(email_list)),
        point=point or None,
        business=business.parse_business(row),
    )


async def import_registry(
    engine: AsyncEngine, source: str | Path, now: datetime | None = None, branches: Collection[str] = ()
) -> ImportReport:
    """Load or update the registry from a CSV file (path) in one transaction; `branches`: the
    configured branch ids a row may name (`Config.branches`)."""
    text = await asyncio.to_thread(Path(source).read_text, encoding="utf-8")
    rows, refused = parse_rows(text, branches)
    report = ImportReport(refused=refused)
    now = now or datetime.now(UTC)
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Gateways sharing a database load the registry at start-up, often at the same moment:
            # one import at a time, or two of them insert the same new account and one fails.
            await conn.execute(sql_text("SELECT pg_advisory_xact_lock(:key)"), {"key": _IMPORT_LOCK})
        by_account: dict[str, list[RegistryRow]] = {}
        for r in rows:
            by_account.setdefault(r.account, []).append(r)
        # Bulk: read what exists in a few IN queries, compare in Python, write with executemany
        # (one or two queries a row made a 20,000-meter import take a minute or more).
        account_ids, changed_accounts = await _sync_accounts(conn, by_account, now)
        # A business customer's contract is given on each of its rows; the first row's counts.
        given = {n: g[0].business for n, g in by_account.items()}
        changed_accounts |= await business.sync_customers(conn, account_ids, given)
        outcomes = await _sync_meters(conn, account_ids, rows, now)
        for r, outcome in zip(rows, outcomes, strict=True):
            # An account's address and phones are given on each of its rows; when they change,
            # every row of that account is reported changed even if its meter stayed the same.
            if outcome == "unchanged" and r.account in changed_accounts:
                outcome = "changed"
            if outcome == "added":
                report.added += 1
            elif outcome == "changed":
                report.changed += 1
            else:
                report.unchanged += 1
        if report.added or report.changed:
            # Tells the intake writers (of every gateway process) to forget registry rows they hold.
            bumped = await conn.execute(
                update(registry_version).values(version=registry_version.c.version + 1)
            )
            if bumped.rowcount == 0:  # the row was deleted (tests empty every table)
                await conn.execute(insert(registry_version).values(id=1, version=1))
    return report


_CHUNK = 2000  # values per IN list, well below SQLite's limit of bound parameters


def _chunks(items: Iterable[T]) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == _CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _phones_of(group: Iterable[RegistryRow]) -> list[str]:
    return list(dict.fromkeys(p for r in group for p in r.phones))


def _emails_of(group: Iterable[RegistryRow]) -> list[str]:
    return list(dict.fromkeys(e for r in group for e in r.emails))


def _account_values(first: RegistryRow) -> dict[str, Any]:
    """The `accounts` columns an account's (first) row gives."""
    return {"address": first.address, "timezone": first.timezone, "branch": first.branch}


async def _account_ids(conn: AsyncConnection, numbers: Iterable[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in _chunks(numbers):
        query = select(
            accounts.c.number, accounts.c.id, accounts.c.address, accounts.c.timezone, accounts.c.branch
        )
        for row in (await conn.execute(query.where(accounts.c.number.in_(part)))).all():
            found[row.number] = row
    return found


async def _sync_accounts(
    conn: AsyncConnection, by_account: dict[str, list[RegistryRow]], now: datetime
) -> tuple[dict[str, int], set[str]]:
    """Insert new accounts, update changed addresses/time zones/branches, replace changed phone
    and e-mail lists.

    Returns every account's id and the accounts whose address, time zone, branch, phones or
    e-mails changed."""
    existing = await _account_ids(conn, by_account)
    new: list[dict[str, Any]] = [
        {"number": n, **_account_values(g[0]), "updated_at": now}
        for n, g in by_account.items()
        if n not in existing
    ]
    if new:
        await conn.execute(insert(accounts), new)
        existing.update(await _account_ids(conn, (row["number"] for row in new)))
    ids = {n: int(existing[n].id) for n in by_account}
    changed: set[str] = set()
    updates = []
    for n, g in by_account.items():
        row = existing[n]
        values = _account_values(g[0])
        if any(getattr(row, k) != v for k, v in values.items()):
            changed.add(n)
            updates.append({"b_id": row.id, **values})
    if updates:
        await conn.execute(
            update(accounts)
            .where(accounts.c.id == bindparam("b_id"))
            .values({**{k: bindparam(k) for k in updates[0] if k != "b_id"}, "updated_at": now}),
            updates,
        )
    number_of = {i: n for n, i in ids.items()}
    for table, listed in ((phones, _phones_of), (account_emails, _emails_of)):
        wanted = {ids[n]: listed(g) for n, g in by_account.items()}
        changed |= {number_of[i] for i in await _replace_lists(conn, table, wanted)}
    return ids, changed


async def _replace_lists(conn: AsyncConnection, table: Table, wanted: dict[int, list[str]]) -> set[int]:
    """Make each account's rows of `table` (phones, e-mails: account id and one value) what the
    registry lists; returns the accounts whose list changed."""
    key, value = table.c.account_id, table.c[table.columns.keys()[1]]
    have: dict[int, set[str]] = {}
    for part in _chunks(wanted):
        for account_id, item in (await conn.execute(select(key, value).where(key.in_(part)))).all():
            have.setdefault(account_id, set()).add(item)
    replaced = [i for i, items in wanted.items() if have.get(i, set()) != set(items)]
    for part in _chunks(replaced):
        await conn.execute(delete(table).where(key.in_(part)))
    rows = [{"account_id": i, value.name: item} for i in replaced for item in wanted[i]]
    if rows:
        await conn.execute(insert(table), rows)
    return set(replaced)


async def _meters_by_serial(conn: AsyncConnection, serials: Iterable[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in _chunks(serials):
        for row in (await conn.execute(select(meters).where(meters.c.serial.in_(part)))).mappings().all():
            found[row["serial"]] = row
    return found


async def _sync_meters(
    conn: AsyncConnection, account_ids: dict[str, int], rows: list[RegistryRow], now: datetime
) -> list[str]:
    """Insert new meters, update changed ones, and fit their state rows to their zones.

    Returns "added", "changed" or "unchanged" for each row."""
    existing = await _meters_by_serial(conn, (r.serial for r in rows))
    outcomes: list[str] = []
    new: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for r in rows:
        values = {
            "account_id": account_ids[r.account],
            "model": r.model,
            "zones": ";".join(r.zones),
            "digits": r.digits,
            "max_power_kw": None if r.max_power_kw is None else str(r.max_power_kw),
            "point": r.point,
            "ct_ratio": None if r.ct_ratio is None else ratios.text(r.ct_ratio),
            "vt_ratio": None if r.vt_ratio is None else ratios.text(r.vt_ratio),
            "active": r.active,
        }
        old = existing.get(r.serial)
        if old is None:
            new.append({"serial": r.serial, "updated_at": now, **values})
            outcomes.append("added")
        elif all(old[k] == v for k, v in values.items()):
            outcomes.append("unchanged")
        else:
            updates.append({"b_id": old["id"], **values})
            outcomes.append("changed")
    if new:
        await conn.execute(insert(meters), new)
        existing.update(await _meters_by_serial(conn, (m["serial"] for m in new)))
    if updates:
        await conn.execute(
            update(meters)
            .where(meters.c.id == bindparam("b_id"))
            .values({**{k: bindparam(k) for k in updates[0] if k != "b_id"}, "updated_at": now}),
            updates,
        )
    # One state row per zone: the intake locks these while deciding a reading of that zone.
    zones_of = {
        int(existing[r.serial]["id"]): r.zones
        for r, outcome in zip(rows, outcomes, strict=True)
        if outcome != "unchanged"
    }
    have: dict[int, set[str]] = {}
    for part in _chunks(zones_of):
        query = select(meter_state.c.meter_id, meter_state.c.zone).where(meter_state.c.meter_id.in_(part))
        for meter_id, zone in (await conn.execute(query)).all():
            have.setdefault(meter_id, set()).add(zone)
    fresh: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    for meter_id, zones in zones_of.items():
        had = have.get(meter_id, set())
        fresh += [
            {"meter_id": meter_id, "zone": z, "total_kwh": "0", "total_days": "0"}
            for z in zones
            if z not in had
        ]
        stale += [{"b_meter": meter_id, "b_zone": z} for z in sorted(had - set(zones))]
    if fresh:
        await conn.execute(insert(meter_state), fresh)
    if stale:
        await conn.execute(
            delete(meter_state).where(
                and_(
                    meter_state.c.meter_id == bindparam("b_meter"), meter_state.c.zone == bindparam("b_zone")
                )
            ),
            stale,
        )
    return outcomes
