"""Group commit for a batched write: what accumulates while one commit runs shares the next.

A door that stores a row before it answers (the SMS reply log, the Telegram updates) would pay
one durable commit per request; under load those commits queue up behind one another. Instead
each request is queued with a future, and one writer task takes whatever accumulated while the
previous commit ran, hands it to `write(batch)` (one transaction), and answers every future
with its own result once `write` has returned, that is once the batch is committed. If `write`
raises, every request of the batch gets the exception; later ones are tried in the next batch.

The intake (gateway/intake.py) groups its submissions the same way but does not use this: it
keeps several groups in flight at once (two on PostgreSQL, four queued to the SQLite writer
process), counts a group by its submissions rather than its requests (a device batch is one
request of many), decides where each group runs and replaces a writer process only between
groups, and records each group in the metrics. Those are the intake's own rules; this helper
writes one batch at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """One writer task in front of `write`: `await submit(item)` returns `item`'s result, in
    the order of the batch `write` returns, once its batch is committed. The writer starts
    with the first item (and again after a failure that ended it); `stop` drains the queue."""

    def __init__(
        self, write: Callable[[list[T]], Awaitable[Sequence[R]]], name: str, max_batch: int | None = None
    ) -> None:
        self._write = write
        self._name = name
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queue `item` for the next commit and wait for its result (or the batch's error)."""
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name=self._name)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and (self._max_batch is None or len(batch) < self._max_batch):
                batch.append(self._queue.get_nowait())
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as exc:  # the database is away: every waiter of this batch hears it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def stop(self) -> None:
        """Commit what is queued, then stop the writer."""
        if self._writer is None:
            return
        if not self._writer.done():
            await self._queue.join()
            self._writer.cancel()
        try:
            await self._writer
        except (asyncio.CancelledError, Exception):
            pass
        self._writer = None
