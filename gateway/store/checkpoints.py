"""WAL checkpoints of the intake writer's SQLite file, run beside the writer instead of by it.

A SQLite connection in WAL mode checkpoints by itself: the commit that takes the log past 1,000
pages first copies the log back into the database file and syncs it. For the intake writer
that was a quarter of its time: a reading touches about one page of its meter's history index
wherever that lies, so a group of 1,500 readings logs some 2,300 pages (9 MB) and every group's
commit paid for copying them again. Here a thread of the writer process, on a connection of
its own, copies them while the writer decides the next group (SQLite releases the interpreter
lock meanwhile, so it runs on the other core).

Copying is not enough to keep the log short: SQLite starts writing the log from its beginning
again only when a writer begins a transaction after every page has been copied and no reader
still reads the old pages, and the intake writer begins its next transaction at once. So when
the log has grown past `RESTART_FRAMES`, the writer itself asks for a RESTART checkpoint after
a commit (seldom: a few times a minute under full load), which copies what is left (little:
the background has done the rest) and lets the next transaction start the log over. It never
waits for that: if a reader is in the way, it tries again after the next group. Durability is
not touched: a commit still syncs the log.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

log = logging.getLogger(__name__)

# 16,384 pages of 4 KiB: a log of at most about 64 MiB under sustained load (a few groups).
RESTART_FRAMES = 16_384
# Seconds between background copies at most (under sustained load, a few groups' pages each).
INTERVAL = 0.2


class BackgroundCheckpoints:
    """A thread that checkpoints the SQLite file at `path` after each commit it is told of.

    The writer's own connection must not checkpoint by itself (`PRAGMA wal_autocheckpoint=0`);
    after each of its commits it calls `committed`, and `restart` when `log_too_long`."""

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._wake = threading.Event()
        self._closing = False
        self.log_frames = 0  # pages in the log after the last background checkpoint
        self.restarts = 0
        self._thread = threading.Thread(target=self._run, name="wal-checkpoints", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """The writer has committed: copy the log in the background when the last copy is
        `INTERVAL` seconds old."""
        self._wake.set()

    @property
    def log_too_long(self) -> bool:
        """The log should be restarted (see `restart`) before the writer's next transaction."""
        return self.log_frames > RESTART_FRAMES

    def restart(self, writer: sqlite3.Connection) -> None:
        """From the writer's connection, outside a transaction: copy what is left of the log
        and let the next transaction write it from its beginning again.

        No busy wait: with a reader or another checkpoint in the way, RESTART copies what it
        can and answers busy; the log is then restarted after a later group."""
        writer.execute("PRAGMA busy_timeout=0")
        try:
            busy, _, _ = writer.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()[0]
        finally:
            writer.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        if not busy:
            self.log_frames = 0
            self.restarts += 1

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        self._thread.join(10)

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            # Sync the database file after copying, like the connection that used to do it.
            conn.execute("PRAGMA synchronous=FULL")
            while not self._closing:
                self._wake.wait()
                if self._closing:
                    break
                # Every copy ends with a sync of the database file: at most one per INTERVAL,
                # or a writer of small groups (single readings) would sync twice per commit.
                time.sleep(INTERVAL)
                self._wake.clear()
                try:
                    # fetchall: a half-read PRAGMA result would keep a read lock on the log
                    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
                except sqlite3.Error:
                    log.exception("background WAL checkpoint of %s failed; the writer's will do", self._path)
                    self.log_frames = RESTART_FRAMES + 1  # let the writer checkpoint after its next group
                    continue
                if frames >= 0:  # -1: busy, nothing learnt
                    self.log_frames = frames
        finally:
            conn.close()
