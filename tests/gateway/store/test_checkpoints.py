"""The intake writer's WAL is copied back by a background thread and stays bounded under a
writer that never pauses (gateway/store/checkpoints.py)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.store import checkpoints
from gateway.store.checkpoints import BackgroundCheckpoints

ROW = "x" * 3000  # about a page a row


def writer_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # as the intake writer's engine
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
    return conn


def write_group(conn: sqlite3.Connection, rows: int = 50) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(ROW,)] * rows)
    conn.execute("COMMIT")


def wal_pages(path: Path) -> int:
    return os.path.getsize(f"{path}-wal") // 4096


def test_log_stays_bounded_while_the_writer_never_pauses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "RESTART_FRAMES", 300)
    monkeypatch.setattr(checkpoints, "INTERVAL", 0.01)
    db = tmp_path / "w.db"
    conn = writer_connection(db)
    background = BackgroundCheckpoints(str(db), 30_000)
    try:
        for _ in range(80):  # some 4,000 pages in all, one transaction right after another
            write_group(conn)
            background.committed()
            if background.log_too_long:
                background.restart(conn)
            time.sleep(0.002)
        assert background.restarts >= 1
        # The file holds the longest the log ever was: some groups past the limit (how many depends
        # on how soon the thread's copy finishes on a loaded machine), far from all 80 groups'.
        assert wal_pages(db) < 80 * 50 // 2
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 80 * 50
    finally:
        background.close()
        conn.close()


def test_without_restarts_the_log_of_such_a_writer_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reason `restart` exists: background copies alone never let the log start over."""
    monkeypatch.setattr(checkpoints, "INTERVAL", 0.01)
    db = tmp_path / "w.db"
    conn = writer_connection(db)
    background = BackgroundCheckpoints(str(db), 30_000)
    try:
        for _ in range(40):
            conn.execute("BEGIN IMMEDIATE")  # the next transaction begins at once, as the writer's
            background.committed()
            time.sleep(0.002)
            conn.executemany("INSERT INTO t (v) VALUES (?)", [(ROW,)] * 50)
            conn.execute("COMMIT")
        deadline = time.monotonic() + 5
        while background.log_frames < 30 * 50 and time.monotonic() < deadline:
            background.committed()
            time.sleep(0.02)
        assert background.log_frames >= 30 * 50  # copied in the background, yet never restarted
        assert wal_pages(db) >= 30 * 50
    finally:
        background.close()
        conn.close()
