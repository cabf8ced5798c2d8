"""One XML 80020/80040 file into the store, and its report.

Whatever brought the file (`meter-gateway import 80020 FILE`, the watched folder), an import is:
the file's size bounded and its SHA-256 taken, the message parsed (adapters/meters/xml80020/
message.py), each measuring channel looked up in `[xml80020] channels` and its meter and zone in
the registry, each period's value checked, then the values stored in `meter_intervals` as kind
"energy" over (start_at, at], and a row in `headend_files` with the counts.

Each value's identity is its meter, zone and period (the file's point, channel and period through
the mapping), so importing a file again, or another file with the same values, changes nothing
and the report says `unchanged`; a different value for a period already stored is a `conflict`
and the stored value is kept (an operator decides). A value is refused, alone, when it is no
number, negative or absurd (`bad_value`), more than the meter can count in the period at its
permitted power (`impossible`: the readings' own bound, gateway/validation/context.py), has no value (`no_value`), has a period that is no
HHMM..HHMM (`bad_period`) or repeats a period of its channel (`duplicate_period`); all the values
of a channel are refused when its meter is not in the registry (`unknown_meter`) or has no such
zone (`unknown_zone`); a channel that is not mapped is skipped and reported (`not_mapped`).

The values are interval energy, not counter readings: they are not booked through the readings
intake (its checks compare a counter with the previous one), and billing does not receive them
as readings.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.meters import store
from adapters.meters.intervals import IntervalRow, store_intervals
from adapters.meters.tables import meter_intervals
from adapters.meters.xml80020.config import ChannelMapping, Xml80020Config
from adapters.meters.xml80020.message import FileProblem, Message, parse
from adapters.meters.xml80020.tables import headend_files
from gateway.validation.context import possible_kwh

KIND = "energy"
MAX_VALUE = Decimal(10) ** 9  # kWh in one period: more is a broken file, not a consumer
SHOWN_PROBLEMS = 5  # details per channel in the report; the counts have all of them
CHUNK = 500


@dataclass
class ChannelReport:
    """What became of one measuring channel's values."""

    point: str
    channel: str
    meter: str | None = None
    zone: str | None = None
    values: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def note(self, outcome: str, detail: str | None = None) -> None:
        self.outcomes[outcome] += 1
        if detail is not None and len(self.problems) < SHOWN_PROBLEMS:
            self.problems.append(detail)

    def line(self) -> str:
        where = f"point {self.point} channel {self.channel}"
        if self.meter is None:
            return f"{where}: not mapped ({self.values} values skipped)"
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.outcomes.items()))
        text = f"{where} -> meter {self.meter} zone {self.zone}: {self.values} values: {counts}"
        return text + "".join(f"\n    {p}" for p in self.problems)


@dataclass
class FileReport:
    """An import's report: the file, earlier imports of it, each channel, the totals."""

    file_name: str
    sha256: str
    via: str
    message: Message | None = None
    error: str | None = None
    import_id: int | None = None
    earlier: list[tuple[int, datetime]] = field(default_factory=list)
    channels: list[ChannelReport] = field(default_factory=list)

    def totals(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for c in self.channels:
            if c.meter is None:
                total["skipped"] += c.values
                continue
            for outcome, n in c.outcomes.items():
                total[outcome if outcome in ("stored", "unchanged", "conflict") else "refused"] += n
        return total

    @property
    def changed_nothing(self) -> bool:
        totals = self.totals()
        return self.error is None and totals["stored"] == 0

    def text(self) -> str:
        lines = [
            f"XML file {self.file_name} (sha256 {self.sha256[:16]}), import {self.import_id} via {self.via}"
        ]
        if self.earlier:
            when = ", ".join(f"import {i} on {at:%Y-%m-%d %H:%M} UTC" for i, at in self.earlier)
            lines.append(f"this file was imported before ({when})")
        if self.error is not None:
            lines.append(f"refused whole: {self.error}")
            return "\n".join(lines) + "\n"
        m = self.message
        assert m is not None
        sender = f"{m.sender_inn} {m.sender_name}".strip()
        lines.append(
            f"class {m.message_class} number {m.number or '-'} of {m.day:%Y-%m-%d} from {sender or '-'}"
        )
        lines += [c.line() for c in self.channels]
        t = self.totals()
        lines.append(
            f"total: {m.values} values: {t['stored']} stored, {t['unchanged']} unchanged, "
            f"{t['conflict']} conflicts, {t['refused']} refused, {t['skipped']} not mapped"
        )
        if self.changed_nothing:
            lines.append("nothing changed")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class _Value:
    report: ChannelReport
    period: str  # "HHMM-HHMM", for the report
    row: IntervalRow


def _number(text: str | None) -> Decimal | None:
    if not text or len(text) > 32:  # the column holds 32 characters; no meter's value is longer
        return None
    try:
        value = Decimal(text.replace(",", ".").replace(" ", ""))
    except InvalidOperation:
        return None
    # "1e-999999999" or "0e999999999" are short, but written out in full they are a billion digits
    exponent = value.as_tuple().exponent
    return value if value.is_finite() and isinstance(exponent, int) and -9 <= exponent <= 9 else None


def _read(path: Path, limit: int) -> tuple[bytes | None, str]:
    """(the file's bytes, or None when it is larger than `limit`; its SHA-256), read in blocks."""
    digest = hashlib.sha256()
    parts: list[bytes] | None = []
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
            if parts is not None and size > limit:
                parts = None  # too large: only its SHA-256 is taken, for the record
            if parts is not None:
                parts.append(block)
    return (b"".join(parts) if parts is not None else None), digest.hexdigest()


async def import_file(
    engine: AsyncEngine,
    config: Xml80020Config,
    path: Path,
    *,
    via: str,
    clock: Callable[[], datetime],
    default_max_power_kw: Decimal,
) -> FileReport:
    """Import one file and record it; the report says what happened (OSError: the file cannot be read)."""
    data, sha256 = await asyncio.to_thread(_read, path, config.max_file_bytes)
    report = FileReport(path.name[-255:], sha256, via)
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(headend_files.c.id, headend_files.c.imported_at)
            .where(headend_files.c.sha256 == report.sha256)
            .order_by(headend_files.c.id)
        )
        report.earlier = [(r.id, r.imported_at) for r in rows]
    now = clock()
    if data is None:
        report.error = f"the file is larger than [xml80020] max_file_bytes ({config.max_file_bytes})"
    else:
        try:
            report.message = parse(data)
        except FileProblem as exc:
            report.error = str(exc)
    if report.message is not None:
        values = await _check(engine, config, report, default_max_power_kw)
        await _store(engine, values, now)
    report.import_id = await _record(engine, report, now)
    return report


async def _check(
    engine: AsyncEngine, config: Xml80020Config, report: FileReport, default_max_power_kw: Decimal
) -> list[_Value]:
    """Each channel's values checked: the rows to store, the refusals noted in the report."""
    message = report.message
    assert message is not None
    zone_info = ZoneInfo(config.time_zone)
    mapping: dict[tuple[str, str], ChannelMapping] = {
        (c.point, c.channel.zfill(2)): c for c in config.channels
    }
    known = await store.registry_meters(engine, sorted({c.meter for c in config.channels}))
    values: list[_Value] = []
    for point in message.points:
        for channel in point.channels:
            target = mapping.get((point.code, channel.code.zfill(2)))
            cr = ChannelReport(point.code, channel.code, values=len(channel.periods))
            report.channels.append(cr)
            if target is None:
                continue
            cr.meter, cr.zone = target.meter, target.zone
            registered = known.get(target.meter)
            zones = registered.zones if registered else None
            if registered is None or zones is None or target.zone not in zones:
                reason = "unknown_meter" if zones is None else "unknown_zone"
                detail = (
                    f"meter {target.meter} is not in the registry"
                    if zones is None
                    else f"meter {target.meter} has zones {';'.join(zones)}, not {target.zone}"
                )
                cr.outcomes[reason] += len(channel.periods)
                cr.problems.append(detail)
                continue
            seen: set[datetime] = set()
            source = f"{message.message_class}:{message.number}:{point.code}:{channel.code}"[:128]
            for period in channel.periods:
                label = f"{period.start}-{period.end}"
                try:
                    start, end = period.bounds(message.day, zone_info)
                except ValueError as exc:
                    cr.note("bad_period", f"period {label[:20]!r}: {exc}")
                    continue
                value = _number(period.value)
                if value is None:
                    if period.value:
                        cr.note("bad_value", f"period {label}: {period.value[:20]!r} is no number")
                    else:
                        cr.note("no_value", f"period {label}: no value")
                    continue
                if value < 0 or value > MAX_VALUE:
                    cr.note("bad_value", f"period {label}: {value} kWh is out of range")
                    continue
                power = registered.max_power_kw or default_max_power_kw
                hours = Decimal((end - start).total_seconds()) / 3600
                if value > (most := possible_kwh(power, hours)):
                    minutes = int(hours * 60)
                    cr.note(
                        "impossible",
                        f"period {label}: {value} kWh in {minutes} min is more than the {most} kWh "
                        f"possible at {power} kW",
                    )
                    continue
                at = end.astimezone(UTC)
                if at in seen:
                    cr.note("duplicate_period", f"period {label} is given twice; the first is taken")
                    continue
                seen.add(at)
                row = IntervalRow(
                    meter_serial=target.meter,
                    zone=target.zone,
                    kind=KIND,
                    at=at,
                    value=value,
                    source=source,
                    start_at=start.astimezone(UTC),
                    status=period.status[:16] if period.status and period.status.isdigit() else None,
                )
                values.append(_Value(cr, label, row))
    return values


async def _store(engine: AsyncEngine, values: list[_Value], now: datetime) -> None:
    """Store the values (adapters/meters/intervals.py); note each one's outcome in its channel's report,
    a conflict with the value that was kept."""
    async with engine.begin() as conn:
        outcomes: list[str] = []
        for i in range(0, len(values), CHUNK):
            outcomes += await store_intervals(conn, [v.row for v in values[i : i + CHUNK]], now)
        shown: list[_Value] = []  # the conflicts the report spells out: the first few of each channel
        per_channel: Counter[int] = Counter()
        for v, outcome in zip(values, outcomes, strict=True):
            if outcome == "conflict" and per_channel[id(v.report)] < SHOWN_PROBLEMS:
                per_channel[id(v.report)] += 1
                shown.append(v)
        kept = await _stored_values(conn, shown)
    for v, outcome in zip(values, outcomes, strict=True):
        if outcome == "conflict":
            stored = kept.get((v.row.meter_serial, v.row.zone, v.row.at), "?")
            v.report.note(
                outcome, f"period {v.period}: {v.row.value} differs from the stored {stored}; kept {stored}"
            )
        else:
            v.report.note(outcome)


async def _stored_values(conn: AsyncConnection, values: list[_Value]) -> dict[tuple[str, str, datetime], str]:
    """The stored value of each of `values`' points (for the report of conflicts)."""
    found: dict[tuple[str, str, datetime], str] = {}
    for v in values:
        row = (
            await conn.execute(
                select(meter_intervals.c.value).where(
                    meter_intervals.c.meter_serial == v.row.meter_serial,
                    meter_intervals.c.zone == v.row.zone,
                    meter_intervals.c.kind == KIND,
                    meter_intervals.c.at == v.row.at,
                )
            )
        ).first()
        if row is not None:
            found[(v.row.meter_serial, v.row.zone, v.row.at)] = row.value
    return found


async def _record(engine: AsyncEngine, report: FileReport, now: datetime) -> int:
    m = report.message
    t = report.totals()
    async with engine.begin() as conn:
        result = await conn.execute(
            insert(headend_files).values(
                sha256=report.sha256,
                file_name=report.file_name,
                message_class=m.message_class if m else None,
                number=m.number if m else None,
                sender_inn=m.sender_inn if m else None,
                day=m.day.isoformat() if m else None,
                via=report.via,
                imported_at=now,
                values=m.values if m else 0,
                stored=t["stored"],
                unchanged=t["unchanged"],
                conflicts=t["conflict"],
                refused=t["refused"],
                skipped=t["skipped"],
                error=report.error,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])
