"""`meter-gateway export`: readings as CSV (UTF-8 with BOM, `;`, as Excel in Russia expects) or JSON."""

from __future__ import annotations

import csv
from datetime import datetime
from typing import Any, TextIO

import orjson
from sqlalchemy import and_, func, select
from tqdm import tqdm

from gateway.billing import READING_COLUMNS, _joined, reading_json
from gateway.config import Config
from gateway.model import Status
from gateway.store.database import create_engine
from gateway.store.schema import readings

FIELDS = (
    "reading_id", "account", "meter_serial", "zone", "value", "raw_value", "ratio", "taken_at",
    "received_at", "channel", "source", "employee", "period", "verdict", "reasons", "due_at",
    "committed_at", "control",
)  # fmt: skip


def cell(key: str, value: Any) -> Any:
    """A reading's field as a CSV or XML cell: the reasons' codes joined, `control` as 1 or 0."""
    if key == "reasons":
        return ",".join(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else value


async def export_readings(
    config: Config,
    out: TextIO,
    fmt: str,
    since: datetime,
    until: datetime | None = None,
    every_verdict: bool = False,
    progress: bool = False,
) -> int:
    """Stream readings received in [since, until) to `out`; returns how many were written."""
    conditions = [readings.c.received_at >= since]
    if until is not None:
        conditions.append(readings.c.received_at < until)
    if not every_verdict:
        conditions.append(readings.c.verdict == Status.ACCEPTED.value)
    where = and_(*conditions)
    engine = create_engine(config.database.url)
    count = 0
    try:
        async with engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(readings).where(where))).scalar_one()
            bar = tqdm(total=total, unit="reading", disable=not progress, file=None)
            writer = _Writer(out, fmt)
            result = await conn.stream(
                select(*READING_COLUMNS).select_from(_joined()).where(where).order_by(readings.c.id)
            )
            async for row in result:
                writer.write(reading_json(row))
                count += 1
                bar.update(1)
            writer.close()
            bar.close()
    finally:
        await engine.dispose()
    return count


class _Writer:
    def __init__(self, out: TextIO, fmt: str) -> None:
        self.out = out
        self.fmt = fmt
        self.first = True
        if fmt == "csv":
            self.csv = csv.DictWriter(out, fieldnames=FIELDS, delimiter=";", lineterminator="\r\n")
            self.csv.writeheader()
        else:
            out.write("[")

    def write(self, item: dict[str, Any]) -> None:
        if self.fmt == "csv":
            self.csv.writerow({k: cell(k, item.get(k)) for k in FIELDS})
        else:
            self.out.write(("\n" if self.first else ",\n") + orjson.dumps(item).decode())
            self.first = False

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n")
