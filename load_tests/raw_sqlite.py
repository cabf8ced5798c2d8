"""Baseline (b): what the disk and SQLite allow, with no Python web or ORM layer in between.

Runs on a copy of the benchmark database (the gateway's schema, indexes and registry), with
the gateway's settings: WAL, `synchronous=FULL`, foreign keys on, and a commit per batch.

- `readings_batched`: `executemany` of 200 `readings` rows, commit; rows per second.
- `write_set_batched`: what the gateway writes per reading (one `inbound` row, one `readings`
  row, one `meter_state` update), 200 readings per commit; readings per second.
- `single_commit`: one `readings` row per commit; durable commits per second.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BATCH = 200


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _ts(moment: datetime) -> str:
    # How SQLAlchemy's DateTime stores a (naive UTC) value in SQLite.
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


REASONS = "[]"
RESPONSE = (
    '{"status":"accepted","reasons":[],"account":"4000001","meter_serial":"BM-000001",'
    '"period":"2026-11","values":{"T":"1010"},"duplicate_of":null}'
)
PAYLOAD = '{"id":"raw-1-1","meter":"BM-000001","taken_at":"2026-10-25T00:00:00Z","value":"1010"}'

INSERT_READING = (
    "INSERT INTO readings (inbound_id, account_id, meter_id, zone, value, taken_at, received_at, channel,"
    " source, employee, period, verdict, reasons, due_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
INSERT_INBOUND = (
    "INSERT INTO inbound (id, channel, channel_message_id, received_at, source, payload, response)"
    " VALUES (?,?,?,?,?,?,?)"
)
UPDATE_STATE = (
    "UPDATE meter_state SET last_value=?, last_taken_at=?, last_receipt=?, last_period=?, total_kwh=?,"
    " total_days=?, dev_value=?, dev_taken_at=? WHERE meter_id=? AND zone=?"
)


class RawBench:
    def __init__(self, path: Path) -> None:
        self.conn = _connect(path)
        self.meters = self.conn.execute("SELECT id, account_id FROM meters ORDER BY id").fetchall()
        if not self.meters:
            raise RuntimeError(f"{path}: no meters; import the registry first")
        self.conn.execute("BEGIN IMMEDIATE")
        next_id = (self.conn.execute("SELECT coalesce(max(id), 0) FROM inbound").fetchone()[0]) + 1
        self.conn.execute(
            INSERT_INBOUND,
            (next_id, "device", "raw:anchor", _ts(datetime.now(UTC)), "device:raw", "{}", "{}"),
        )
        self.conn.execute("COMMIT")
        self.anchor = next_id
        self.ids = itertools.count(next_id + 1)
        self.cycle = itertools.cycle(self.meters)
        self.now = datetime.now(UTC)

    def _reading(self, inbound_id: int, step: int) -> tuple[object, ...]:
        meter_id, account_id = next(self.cycle)
        ts = _ts(self.now - timedelta(seconds=step))
        return (
            inbound_id, account_id, meter_id, "T", str(1000 + step), ts, ts, "device",
            "device:bench-raw", None, "2026-11", "accepted", REASONS, ts,
        )  # fmt: skip

    def readings_batched(self, seconds: float) -> float:
        rows, step = 0, 0
        end = time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < end:
            batch = [self._reading(self.anchor, step + i) for i in range(BATCH)]
            step += BATCH
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(INSERT_READING, batch)
            self.conn.execute("COMMIT")
            rows += BATCH
        return rows / (time.perf_counter() - start)

    def write_set_batched(self, seconds: float) -> float:
        rows, step = 0, 0
        end = time.perf_counter() + seconds
        start = time.perf_counter()
        received = _ts(self.now)
        while time.perf_counter() < end:
            inbound_rows, reading_rows, state_rows = [], [], []
            for _ in range(BATCH):
                inbound_id = next(self.ids)
                inbound_rows.append(
                    (
                        inbound_id,
                        "device",
                        f"raw:{inbound_id}",
                        received,
                        "device:bench-raw",
                        PAYLOAD,
                        RESPONSE,
                    )
                )
                reading = self._reading(inbound_id, step)
                step += 1
                reading_rows.append(reading)
                state_rows.append(
                    (
                        reading[4],
                        reading[5],
                        inbound_id,
                        "2026-11",
                        "10",
                        "1",
                        reading[4],
                        reading[5],
                        reading[2],
                        "T",
                    )
                )
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(INSERT_INBOUND, inbound_rows)
            self.conn.executemany(INSERT_READING, reading_rows)
            self.conn.executemany(UPDATE_STATE, state_rows)
            self.conn.execute("COMMIT")
            rows += BATCH
        return rows / (time.perf_counter() - start)

    def single_commit(self, seconds: float) -> float:
        commits, step = 0, 0
        end = time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < end:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(INSERT_READING, self._reading(self.anchor, step))
            self.conn.execute("COMMIT")
            step += 1
            commits += 1
        return commits / (time.perf_counter() - start)

    def close(self) -> None:
        self.conn.close()


def run(path: Path, seconds: float) -> dict[str, float]:
    bench = RawBench(path)
    try:
        return {
            "readings_batched": bench.readings_batched(seconds),
            "write_set_batched": bench.write_set_batched(seconds),
            "single_commit": bench.single_commit(seconds),
        }
    finally:
        bench.close()
