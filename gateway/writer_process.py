"""The SQLite intake writer in a process of its own.

Why a process: deciding a group is Python work (registry, rules, rows: tens of microseconds a
reading). In the gateway's own process that work and the event loop's (HTTP, JSON, channels)
take turns on one interpreter lock, so a device pushing batches kept one core busy and left the
other idle. In a process of its own the decisions run beside the event loop.

It is still the one writer of the database: SQLite takes one writer at a time anyway. Each
group is decided and committed (`synchronous=FULL`) before its verdicts are sent back, so the
gateway acknowledges nothing that is not durable, exactly as when it wrote in-process.

The protocol is a `multiprocessing` pipe of pickles: the gateway sends `(now, submissions)`,
the process answers `(True, verdicts)` or `(False, exception)`, in the order the groups came. A
group that fails is split and decided in parts inside the process (gateway/group_split.py), so
the verdicts may include `unprocessable` refusals, or be a `Partial` list holding errors.
The process ends when the pipe closes: when the gateway stops, or dies (then after the group
in hand). It ignores SIGINT and SIGTERM, which a terminal or a service manager sends to the
whole process group, because the gateway still needs it to finish the requests in flight while
it shuts down.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import weakref
from collections import deque
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from gateway.calendar import WorkCalendar
from gateway.config import Config
from gateway.group_split import Outcome, Partial
from gateway.model import Submission

log = logging.getLogger(__name__)

# A fork server: a small process started once, with the decision code imported, that forks each
# writer. Forking the gateway itself would copy its event loop and threads mid-flight; spawning
# would import everything again for every writer.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["gateway.decide"])
_PROTOCOL = pickle.HIGHEST_PROTOCOL
EXIT_SECONDS = 30  # for the groups in hand to be committed when the gateway stops
_live: weakref.WeakSet[WriterProcess] = weakref.WeakSet()


class WriterProcessDied(RuntimeError):
    """The writer process is gone; whether the group in hand was committed is unknown."""


class WriterProcess:
    """One writer process on one SQLite file, spoken to from the event loop.

    Construct it off the loop (starting a process blocks), then `await connect()` on it. Groups
    are written to the pipe's socket and answers read back on the loop itself: sending from and
    waiting in threads of their own cost the loop a contended interpreter lock at every group.
    """

    def __init__(self, url: str, config: Config, calendar: WorkCalendar) -> None:
        parent, child = _CONTEXT.Pipe()  # a socket pair: duplex
        self._proc = _CONTEXT.Process(
            target=serve,
            args=(child, url, config, calendar, logging.getLogger().level),
            name="meter-gateway intake writer",
        )
        self._proc.start()
        child.close()
        self._sock = socket.socket(fileno=os.dup(parent.fileno()))
        parent.close()
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._waiting: deque[asyncio.Future[list[Outcome]]] = deque()  # in the order sent
        self._lost = False  # the pipe broke: this process decides nothing more
        _live.add(self)

    async def connect(self) -> None:
        reader, self._writer = await asyncio.open_connection(sock=self._sock)
        self._reading = asyncio.create_task(self._read_answers(reader), name="intake-writer-answers")

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def usable(self) -> bool:
        """Nothing has gone wrong with the pipe yet (no system call: see `alive`)."""
        return not self._lost

    def alive(self) -> bool:
        """The process runs and its pipe works."""
        return not self._lost and self._proc.is_alive()

    def decide(self, now: datetime, subs: list[Submission]) -> asyncio.Future[list[Outcome]]:
        """Hand a group to the process: the future gets its verdicts, what the process raised
        deciding it, or WriterProcessDied."""
        assert self._writer is not None, "connect() first"
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        if self._lost:
            future.set_exception(WriterProcessDied("the intake writer process is gone"))
            return future
        data = pickle.dumps((now, subs), _PROTOCOL)
        # multiprocessing.Connection's framing, which the process reads with recv_bytes. At
        # most a few groups are in flight (gateway/intake.py), so the buffer stays bounded.
        self._writer.write(_frame_header(len(data)))
        self._writer.write(data)
        self._waiting.append(future)
        return future

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (size,) = _INT.unpack(await reader.readexactly(4))
                if size == -1:
                    (size,) = _LONG.unpack(await reader.readexactly(8))
                ok, result = pickle.loads(await reader.readexactly(size))
                future = self._waiting.popleft()
                if future.done():
                    continue
                if ok:
                    future.set_result(result)
                else:
                    future.set_exception(result)
        except (asyncio.IncompleteReadError, OSError):
            pass  # the process exited or was killed
        except Exception:  # an answer that does not unpickle: the pipe can no longer be trusted
            log.exception("unreadable answer from intake writer process %s; replacing it", self._proc.pid)
        finally:
            # Whether the groups in hand were committed is unknown: their senders get an error
            # and retry, which their message ids make safe.
            self._lost = True
            while self._waiting:
                future = self._waiting.popleft()
                if not future.done():
                    future.set_exception(WriterProcessDied("the intake writer process exited"))

    async def close(self) -> None:
        """Let the process finish the groups sent and exit; kill it if it does not within
        `EXIT_SECONDS`."""
        if self._writer is not None:
            self._writer.close()  # the process sees the pipe close after the groups sent
        await asyncio.to_thread(self._join, EXIT_SECONDS)
        if self._reading is not None:
            await self._reading  # the process is gone: its end of the pipe is closed

    def _join(self, timeout: float) -> None:
        self._proc.join(timeout)
        if self._proc.is_alive():
            log.error("intake writer process %s did not exit; killing it", self._proc.pid)
            self._proc.kill()
            self._proc.join()
        _live.discard(self)

    def close_at_exit(self) -> None:
        """Without an event loop (the interpreter is exiting): close the pipe, wait for the process."""
        self._sock.close()
        self._join(EXIT_SECONDS)


_INT = struct.Struct("!i")
_LONG = struct.Struct("!Q")


def _frame_header(size: int) -> bytes:
    if size > 0x7FFFFFFF:
        return _INT.pack(-1) + _LONG.pack(size)
    return _INT.pack(size)


@atexit.register
def _close_all() -> None:
    # Registered after multiprocessing's own exit handler, so it runs first: that handler joins
    # every child, which would wait for ever on a writer whose pipe is still open.
    for writer in list(_live):
        writer.close_at_exit()


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
    decider = Decider(config, calendar, postgres=False, sole_writer=True)
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
                outcomes = decider.decide_apart_sync(engine, subs, now)  # split when it fails
                if isinstance(outcomes, Partial):
                    outcomes = Partial(_picklable(o) if isinstance(o, Exception) else o for o in outcomes)
                reply = True, outcomes
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
