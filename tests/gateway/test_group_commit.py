"""The group commit of the doors' batched writes (gateway/group_commit.py)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.group_commit import GroupCommit


async def test_what_queues_during_a_write_shares_the_next_one() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def write(batch: list[int]) -> list[int]:
        batches.append(batch)
        if len(batches) == 1:
            await release.wait()
        return [n * 10 for n in batch]

    commit = GroupCommit(write, "test-writer", max_batch=3)
    first = asyncio.create_task(commit.submit(1))
    await asyncio.sleep(0)  # the writer takes 1 alone and waits in its write
    await asyncio.sleep(0)
    later = [asyncio.create_task(commit.submit(n)) for n in (2, 3, 4, 5)]
    await asyncio.sleep(0)
    release.set()
    assert await first == 10
    assert await asyncio.gather(*later) == [20, 30, 40, 50]
    assert batches == [[1], [2, 3, 4], [5]]  # at most max_batch a write
    await commit.stop()


async def test_a_failed_write_fails_its_batch_and_the_next_one_is_tried() -> None:
    calls = 0

    async def write(batch: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database away")
        return batch

    commit = GroupCommit(write, "test-writer")
    with pytest.raises(RuntimeError, match="database away"):
        await commit.submit("a")
    assert await commit.submit("b") == "b"
    await commit.stop()


async def test_stop_commits_what_is_queued() -> None:
    written: list[int] = []

    async def write(batch: list[int]) -> list[None]:
        await asyncio.sleep(0.01)
        written.extend(batch)
        return [None] * len(batch)

    commit = GroupCommit(write, "test-writer")
    waiters = [asyncio.create_task(commit.submit(n)) for n in range(5)]
    await asyncio.sleep(0)
    await commit.stop()
    assert written == [0, 1, 2, 3, 4]
    assert all(w.done() for w in waiters)
    await commit.stop()  # twice is harmless
