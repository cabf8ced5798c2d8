"""The line's short pauses (adapters/meters/pause.py): never shorter than asked, and a pause that is
cut short (a bus stopping) leaves no timer descriptor behind."""

from __future__ import annotations

import asyncio
import os
import time

from adapters.meters.pause import pause


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_pause_is_never_shorter_than_asked() -> None:
    for seconds in (0.0002, 0.0015, 0.004, 0.03):
        started = time.monotonic()
        await pause(seconds)
        assert time.monotonic() - started >= seconds
    await pause(0)
    await pause(-1)  # a moment already past: no wait, no error


async def test_pauses_done_or_cancelled_leave_no_descriptor_behind() -> None:
    before = open_fds()
    for _ in range(200):
        await pause(0.0001)
    task = asyncio.create_task(pause(0.015))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert open_fds() == before
