"""The one intake path: store the inbound message, validate, store the verdict, then answer.

Every channel calls `Intake.submit` (or `submit_many` for a device batch). Submissions are queued
to a single writer task that takes whatever has accumulated while the previous commit was
running and decides all of it in one transaction: group commit. A sender is answered only after
that transaction has committed, so an acknowledged reading survives a crash, and the cost of the
durable commit is shared by every request that arrived meanwhile. A group whose transaction
fails is decided again in parts (gateway/group_split.py), so one bad submission costs no other
its verdict. What a decision is lives in
gateway/decide.py; this module decides where it runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import privacy
from gateway.calendar import WorkCalendar
from gateway.config import Config
from gateway.decide import Decider, LockTurn
from gateway.group_split import Outcome, Partial, decide_apart
from gateway.metrics import Metrics
from gateway.model import Submission, Verdict
from gateway.store.database import sqlite_file_url
from gateway.writer_process import WriterProcess

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
        # process of its own (gateway/writer_process.py), started with the intake.
        # Idle deciders: one per group in flight, so that each keeps its registry cache to itself.
        self._deciders: list[Decider] = []
        self._last_turn: LockTurn | None = None  # of the newest group decided in this process
        self._process: WriterProcess | None = None
        self._process_for: AsyncEngine | None = None

    async def start(self) -> None:
        if self._writer is None:
            await self._current_process()  # a SQLite file's writer is up before anyone submits
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
        if self._process is not None:
            await self._process.close()
        self._process = self._process_for = None

    def _groups_at_once(self) -> int:
        """How many groups may be in flight: four queued to the writer process, so that it never
        waits for this one (measured best for batches against one to three); on PostgreSQL two,
        one computed while the database works on the other (row locks and the unique message
        index keep them apart, as between two gateways); an in-memory SQLite, one."""
        if self._process_ready():
            return 4
        return 2 if self.engine.dialect.name == "postgresql" else 1

    def _process_ready(self) -> bool:
        """A writer process is working for the SQLite file of `self.engine` (as far as is known
        without asking the system: `_current_process` does, once a group)."""
        return self._process is not None and self._process_for is self.engine and self._process.usable()

    async def _current_process(self) -> WriterProcess | None:
        """The writer process for the SQLite file of `self.engine`, started or replaced if need
        be (None: decided in this process). Groups still in flight to a process that is
        replaced fail with WriterProcessDied: whether they were committed is unknown."""
        if self._process is not None and not (self._process_ready() and self._process.alive()):
            if not self._process.alive():
                # Killed between groups: nothing was in hand, so a new process simply takes over.
                log.error("intake writer process %s is gone; starting a new one", self._process.pid)
            await self._process.close()
            self._process, self._process_for = None, None
        if self._process_for is not self.engine:  # first use, or the engine was replaced
            await self._load_privacy_key()
            self._process_for = self.engine
            url = sqlite_file_url(self.engine)
            if url is not None:
                self._process = await asyncio.to_thread(WriterProcess, url, self.config, self.calendar)
                await self._process.connect()
        return self._process

    async def _load_privacy_key(self) -> None:
        """Senders are hashed with the gateway's key while deciding (gateway/privacy.py); the
        writer process gets it with the configuration, so it is loaded before one is started. A
        database that does not answer yet is tried again with the next engine."""
        if self.config.privacy.secret:
            return
        try:
            await privacy.prepare(self.engine, self.config, self.clock())
        except Exception as exc:  # the intake starts anyway; its groups fail until the database is back
            log.warning("privacy key not loaded: %s", exc)

    async def preview(self, sub: Submission) -> Verdict:
        """What `submit(sub)` would answer now, with nothing stored or counted (gateway/decide.py,
        `Decider.preview`): a check of a row as it is typed, not a decision."""
        decider = Decider(self.config, self.calendar, self.engine.dialect.name == "postgresql")
        async with self.engine.connect() as conn:
            return await decider.preview(conn, sub, self.clock())

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
        in_flight: set[asyncio.Task[None]] = set()
        while True:
            while len(in_flight) >= self._groups_at_once():
                _, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            jobs = [await self._queue.get()]
            count = len(jobs[0][0])
            while count < max_group and not self._queue.empty():
                job = self._queue.get_nowait()
                jobs.append(job)
                count += len(job[0])
            subs = [s for batch, _ in jobs for s in batch]
            if in_flight and self._process is not None and not self._process_ready():
                await asyncio.wait(in_flight)  # a writer process is replaced only when idle
                in_flight = set()
            started = time.perf_counter()
            process = await self._current_process()
            decision: Awaitable[list[Outcome]]
            if process is not None:
                # SQLite file: the writer process decides and commits the group before its
                # verdicts come back (gateway/writer_process.py). Sent now, before anything is
                # awaited, so that groups keep their order.
                decision = process.decide(self.clock(), subs)
            else:
                decision = self._decide_here(self.clock(), subs)
            in_flight.add(asyncio.create_task(self._answer(jobs, subs, decision, started)))

    async def _answer(
        self,
        jobs: list[tuple[Sequence[Submission], asyncio.Future[list[Verdict]]]],
        subs: list[Submission],
        decision: Awaitable[list[Outcome]],
        started: float,
    ) -> None:
        """Wait for a group's verdicts and hand each request its own."""
        try:
            verdicts = await decision
        except Exception as exc:  # a broken database must not kill the writer
            log.exception("intake group of %d failed", len(subs))
            for _, fut in jobs:
                if not fut.done():
                    fut.set_exception(exc)
                self._queue.task_done()
            return
        self.metrics.observe_group(len(subs), time.perf_counter() - started)
        partial = isinstance(verdicts, Partial)  # a systemic failure midway through a split
        offset = 0
        for batch, fut in jobs:
            part = verdicts[offset : offset + len(batch)]
            offset += len(batch)
            if fut.done():
                continue
            failed = [o for o in part if isinstance(o, Exception)] if partial else None
            if failed:
                fut.set_exception(failed[0])
            else:
                fut.set_result(part)  # type: ignore[arg-type]
        decided = [(s, v) for s, v in zip(subs, verdicts, strict=True) if isinstance(v, Verdict)]
        self.metrics.observe_verdicts(decided if partial else zip(subs, verdicts, strict=True))  # type: ignore[arg-type]
        for _ in jobs:
            self._queue.task_done()

    async def _decide_here(self, now: datetime, subs: list[Submission]) -> list[Outcome]:
        """PostgreSQL (or an in-memory SQLite): decide on the event loop's own connection.

        A group that fails is decided in parts (gateway/group_split.py) under the same lock
        turn: parts tried before it was taken keep the group's place in the order; after, a
        later group may have locked a shared meter first, and the part waits for its commit."""
        postgres = self.engine.dialect.name == "postgresql"
        decider = self._deciders.pop() if self._deciders else Decider(self.config, self.calendar, postgres)
        turn = self._last_turn = LockTurn(self._last_turn)

        def attempt(part: list[Submission]) -> Awaitable[list[Verdict]]:
            return self._decide_with(decider, now, part, turn)

        async def refuse(sub: Submission) -> Verdict:
            return (await self._decide_with(decider, now, [sub], turn, refuse=True))[0]

        try:
            return await decide_apart(subs, attempt, refuse)
        finally:
            turn.taken()  # also when it failed before locking anything
            self._deciders.append(decider)

    async def _decide_with(
        self, decider: Decider, now: datetime, subs: list[Submission], turn: LockTurn, refuse: bool = False
    ) -> list[Verdict]:
        # A concurrent transaction may insert the same channel message id between our dedupe
        # query and our insert (another group or gateway); the retry then replays it.
        for attempt in range(3):
            try:
                async with self.engine.begin() as conn:
                    return await decider.decide(conn, subs, now, turn, refuse=refuse)
            except IntegrityError:
                if attempt == 2:
                    raise
                log.info("intake group hit a concurrent duplicate; retrying")
        raise AssertionError("unreachable")
