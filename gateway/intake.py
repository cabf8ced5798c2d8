"""The one intake path: store the inbound message, validate, store the verdict, then answer.

Every channel calls `Intake.submit` (or `submit_many` for a device batch). Submissions are queued
to a single writer task that takes whatever has accumulated while the previous commit was
running and decides all of it in one transaction: group commit. A sender is answered only after
that transaction has committed, so an acknowledged reading survives a crash, and the cost of the
durable commit is shared by every request that arrived meanwhile. What a decision is lives in
gateway/decide.py; this module decides where it runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.calendar import WorkCalendar
from gateway.config import Config
from gateway.decide import Decider
from gateway.metrics import Metrics
from gateway.model import Submission, Verdict
from gateway.store.database import sqlite_file_url
from gateway.writer_process import WriterProcess, WriterProcessDied

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Intake:
    """Group-committing writer in front of the store; the only way readings enter it."""

    def __init__(
        self,
        engine: AsyncEngine,
        config: Config,
        calendar: WorkCalendar,
        metrics: Metrics | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.engine = engine
        self.config = config
        self.calendar = calendar
        self.metrics = metrics or Metrics()
        self.clock = clock
        self._queue: asyncio.Queue[tuple[Sequence[Submission], asyncio.Future[list[Verdict]]]] = (
            asyncio.Queue()
        )
        self._writer: asyncio.Task[None] | None = None
        # In-process decisions (PostgreSQL, in-memory SQLite); a SQLite file is written by a
        # process of its own (see _decide_group), started when first needed.
        self._decider = Decider(config, calendar, postgres=engine.dialect.name == "postgresql")
        self._process: WriterProcess | None = None
        self._process_for: AsyncEngine | None = None
        self._process_thread: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="intake-writer")

    async def stop(self) -> None:
        """Finish what is queued, then stop the writer (and its process)."""
        if self._writer is None:
            return
        await self._queue.join()
        self._writer.cancel()
        try:
            await self._writer
        except asyncio.CancelledError:
            pass
        self._writer = None
        if self._process_thread is not None:
            loop = asyncio.get_running_loop()
            if self._process is not None:
                await loop.run_in_executor(self._process_thread, self._process.close)
            self._process_thread.shutdown()
        self._process = self._process_for = self._process_thread = None

    def _writer_process(self) -> tuple[WriterProcess, ThreadPoolExecutor] | None:
        """The writer process for the SQLite file of `self.engine` (None: decide in-process)."""
        if self._process is not None and not self._process.alive():
            # Killed between groups: nothing was in hand, so a new process simply takes over.
            log.error("intake writer process %s is gone; starting a new one", self._process.pid)
            self._process_for = None
        if self._process_for is not self.engine:  # first use, engine replaced, or process gone
            if self._process is not None:
                self._process.close()  # idle between groups
                self._process = None
            self._process_for = self.engine
            url = sqlite_file_url(self.engine)
            if url is not None:
                self._process = WriterProcess(url, self.config, self.calendar)
        if self._process is None:
            return None
        if self._process_thread is None:
            # Waiting for the process's answer blocks: one thread does it, so groups stay in order.
            self._process_thread = ThreadPoolExecutor(1, thread_name_prefix="intake-writer")
        return self._process, self._process_thread

    async def submit(self, sub: Submission) -> Verdict:
        """Decide one submission; returns once its verdict is durably stored."""
        return (await self.submit_many([sub]))[0]

    async def submit_many(self, subs: Sequence[Submission]) -> list[Verdict]:
        """Decide several submissions (a device batch) in order, in one commit."""
        if not subs:
            return []
        if self._writer is None:
            raise RuntimeError("intake is not started")
        future: asyncio.Future[list[Verdict]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((subs, future))
        return await future

    # -- the writer -------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        max_group = self.config.intake.max_group
        while True:
            jobs = [await self._queue.get()]
            count = len(jobs[0][0])
            while count < max_group and not self._queue.empty():
                job = self._queue.get_nowait()
                jobs.append(job)
                count += len(job[0])
            subs = [s for batch, _ in jobs for s in batch]
            started = time.perf_counter()
            try:
                verdicts = await self._decide_group(subs)
            except Exception as exc:  # a broken database must not kill the writer
                log.exception("intake group of %d failed", len(subs))
                for _, fut in jobs:
                    if not fut.done():
                        fut.set_exception(exc)
                    self._queue.task_done()
                continue
            self.metrics.observe_group(len(subs), time.perf_counter() - started)
            offset = 0
            for batch, fut in jobs:
                part = verdicts[offset : offset + len(batch)]
                offset += len(batch)
                if not fut.done():
                    fut.set_result(part)
            self.metrics.observe_verdicts(zip(subs, verdicts, strict=True))
            for _ in jobs:
                self._queue.task_done()

    async def _decide_group(self, subs: list[Submission]) -> list[Verdict]:
        now = self.clock()
        writer = self._writer_process()
        if writer is not None:
            # SQLite file: the group is decided and committed (synchronous=FULL) by the writer
            # process before its verdicts come back; see gateway/writer_process.py for why.
            process, thread = writer
            loop = asyncio.get_running_loop()
            try:
                verdicts: list[Verdict] = await loop.run_in_executor(thread, process.decide, now, subs)
            except WriterProcessDied:
                # The process is gone (killed?). Whether this group was committed is unknown, so
                # its senders get an error and retry; their message ids make a retry safe. The
                # next group starts a new process.
                self._process_for = None
                raise
            return verdicts
        # A concurrent process may insert the same channel message id between our dedupe
        # query and our insert (PostgreSQL, several gateways); the retry then replays it.
        for attempt in range(3):
            try:
                async with self.engine.begin() as conn:
                    return await self._decider.decide(conn, subs, now)
            except IntegrityError:
                if attempt == 2:
                    raise
                log.info("intake group hit a concurrent duplicate; retrying")
        raise AssertionError("unreachable")
