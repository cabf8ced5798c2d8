"""Pauses shorter than a millisecond, kept to about a tenth of one: a serial line's own.

A line's pauses are short: Modbus' silent interval between frames is 1.75 ms above 19200 baud,
a request at 115200 baud leaves in half a millisecond. asyncio cannot time them: on Linux it
waits in epoll, whose timeout is whole milliseconds rounded up, so `asyncio.sleep(0.0015)` takes
2 ms and more, a third of a Modbus exchange at 115200 baud lost on every request. A thread that
sleeps and wakes the loop was tried and overshot by 0.3 ms (its hand-over of the GIL and the
loop's wake-up). So a short pause arms a Linux timerfd, whose expiry wakes epoll as any file
does, to within tens of microseconds. Python 3.13 has `os.timerfd_create`; this project runs on
3.11, so the two calls are made through ctypes (no kept package offers them for asyncio).
Elsewhere than Linux, or for a pause long enough that a millisecond does not matter, it is
`asyncio.sleep`.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import time

SHORT_PAUSE_S = 0.02  # longer pauses stay on the loop's own timers
_CLOCK_MONOTONIC = 1  # time.monotonic() reads this clock on Linux
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create  # noqa: B018 - present in every glibc and musl since 2008
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def _timer_at(when: float) -> int:
    """A timerfd that becomes readable at monotonic time `when`."""
    assert _LIBC is not None
    fd = _LIBC.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "timerfd_create")
    seconds = int(when)
    spec = _Itimerspec(_Timespec(0, 0), _Timespec(seconds, int((when - seconds) * 1e9)))
    if _LIBC.timerfd_settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) < 0:
        errno = ctypes.get_errno()
        os.close(fd)
        raise OSError(errno, "timerfd_settime")
    return fd


def _expire(expired: asyncio.Future[None]) -> None:
    if not expired.done():
        expired.set_result(None)


async def pause(seconds: float) -> None:
    """Wait at least `seconds`; a short wait ends within about a tenth of a millisecond of it."""
    if seconds <= 0:
        return
    if seconds > SHORT_PAUSE_S or _LIBC is None:
        await asyncio.sleep(seconds)
        return
    loop = asyncio.get_running_loop()
    try:
        fd = _timer_at(time.monotonic() + seconds)
    except OSError:  # out of descriptors, or a kernel without timerfd: a millisecond late, then
        await asyncio.sleep(seconds)
        return
    expired = loop.create_future()
    loop.add_reader(fd, _expire, expired)
    try:
        await expired
    finally:
        loop.remove_reader(fd)
        os.close(fd)
