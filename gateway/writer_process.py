"""The SQLite intake writer in a process of its own.

Why a process: deciding a group is Python work (registry, rules, rows: tens of microseconds a
reading). In the gateway's own process that work and the event loop's (HTTP, JSON, channels)
take turns on one interpreter lock, so a device pushing batches kept one core busy and left the
other idle. In a process of its own the decisions run beside the event loop.

It is still the one writer of the database: SQLite takes one writer at a time anyway. Each
group is decided and committed (`synchronous=FULL`) before its verdicts are sent back, so the
gateway acknowledges nothing that is not durable, exactly as when it wrote in-process.

The protocol is a `multiprocessing` pipe of pickles: the gateway sends `(now, submissions)`,
the process answers `(True, verdicts)` or `(False, exception)`. The process ends when the pipe
closes: when the gateway stops, or dies (then after the group in hand). It ignores SIGINT and
SIGTERM, which a terminal or a service manager sends to the whole process group, because the
gateway still needs it to finish the requests in flight while it shuts down.
"""

from __future__ import annotations

import atexit
import gc
import logging
import multiprocessing
import pickle
import signal
import weakref
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from gateway.calendar import WorkCalendar
from gateway.config import Config
from gateway.model import Submission, Verdict

log = logging.getLogger(__name__)

# A fork server: a small process started once, with the decision code imported, that forks each
# writer. Forking the gateway itself would copy its event loop and threads mid-flight; spawning
# would import everything again for every writer.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["gateway.decide"])
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_live: weakref.WeakSet[WriterProcess] = weakref.WeakSet()


class WriterProcessDied(RuntimeError):
    """The writer process is gone; whether the group in hand was committed is unknown."""


class WriterProcess:
    """One writer process on one SQLite file. `send` and `receive` block: call each from a
    thread of its own (several groups may be in flight; answers come in the order sent)."""

    def __init__(self, url: str, config: Config, calendar: WorkCalendar) -> None:
        self._conn, child = _CONTEXT.Pipe()
        self._proc = _CONTEXT.Process(
            target=serve,
            args=(child, url, config, calendar, logging.getLogger().level),
            name="meter-gateway intake writer",
        )
        self._proc.start()
        child.close()
        _live.add(self)

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.is_alive()

    def send(self, now: datetime, subs: list[Submission]) -> None:
        """Hand a group to the process; its verdicts come from the next `receive` in turn."""
        try:
            self._conn.send_bytes(pickle.dumps((now, subs), _PROTOCOL))
        except BaseException as exc:
            # The answer this group was to get will not come, and the receive waiting for it
            # would take the next group's instead: this process decides nothing more.
            self._proc.kill()
            raise WriterProcessDied(f"could not send a group to the intake writer process: {exc!r}") from exc

    def receive(self) -> list[Verdict]:
        """The verdicts of the oldest group sent and not yet received; raises what the process
        raised deciding it, or WriterProcessDied."""
        try:
            ok, result = pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError) as exc:
            self._proc.join(1)
            raise WriterProcessDied(f"the intake writer process exited ({self._proc.exitcode})") from exc
        if not ok:
            raise result
        verdicts: list[Verdict] = result
        return verdicts

    def close(self, timeout: float = 30) -> None:
        """Let the process finish the group in hand and exit; kill it if it does not."""
        self._conn.close()
        self._proc.join(timeout)
        if self._proc.is_alive():
            log.error("intake writer process %s did not exit; killing it", self._proc.pid)
            self._proc.kill()
            self._proc.join()
        _live.discard(self)


@atexit.register
def _close_all() -> None:
    # Registered after multiprocessing's own exit handler, so it runs first: that handler joins
    # every child, which would wait for ever on a writer whose pipe is still open.
    for writer in list(_live):
        writer.close()


def serve(conn: Connection, url: str, config: Config, calendar: WorkCalendar, log_level: int) -> None:
    """The writer process: decide each group it is sent until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from gateway.decide import Decider  # imported by the fork server already
    from gateway.logs import setup_logging
    from gateway.store.checkpoints import BackgroundCheckpoints
    from gateway.store.database import BUSY_TIMEOUT_MS, create_sqlite_writer_engine

    setup_logging(logging.getLevelName(log_level))
    engine = create_sqlite_writer_engine(url)
    assert engine.url.database is not None
    checkpoints = BackgroundCheckpoints(engine.url.database, BUSY_TIMEOUT_MS)
    decider = Decider(config, calendar, postgres=False)
    # A group of a few thousand readings allocates hundreds of thousands of objects that all
    # die with it, and the default thresholds ran the cycle collector over and over meanwhile:
    # a fifth of the writer's time. What exists now lives as long as the process (frozen:
    # never scanned), and collections come a hundred times less often.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        while True:
            try:
                now, subs = pickle.loads(conn.recv_bytes())
            except EOFError:
                return
            reply: tuple[bool, Any]
            try:
                reply = True, decider.decide_sync(engine, subs, now)
            except Exception as exc:
                reply = False, _picklable(exc)
            try:
                conn.send_bytes(pickle.dumps(reply, _PROTOCOL))
            except OSError:
                return  # the gateway is gone; what was committed stays, unacknowledged
            checkpoints.committed()
            if checkpoints.log_too_long:
                with engine.connect() as db:  # outside any transaction
                    checkpoints.restart(db.connection.driver_connection)  # type: ignore[arg-type]
    finally:
        checkpoints.close()
        engine.dispose()


def _picklable(exc: Exception) -> Exception:
    """`exc` if it survives pickling (SQLAlchemy's errors do), else a RuntimeError saying what it was."""
    try:
        pickle.loads(pickle.dumps(exc, _PROTOCOL))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
