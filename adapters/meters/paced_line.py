"""A paced serial line for the tests and benchmarks: bytes take the time a real RS-485 line takes.

A pty (or a socat pty pair) hands bytes over at once, whatever baud rate its ends are set to, so a
poller on one looks faster than any line allows. `PacedLine` joins two pseudo-terminals with a
relay: what the gateway writes on its end (`gateway_end`) comes out of the meters' end
(`meter_end`) one character time after the previous character, and the other way round, at the
speed and character frame the sending side's port is set to at that moment (read from the pty's
termios, so an IEC 62056-21 readout that goes from 300 to 9600 baud is paced at each speed). The
line is half duplex, as RS-485 is: a byte waits until the line is free in either direction.

The relay runs on the event loop it is started on; a benchmark runs it, with the simulated meters,
in a process of its own so that its work is not counted as the poller's. Written here (about 150
lines) because no kept library paces a pty: tty0tty and socat link ptys without delay.
"""

from __future__ import annotations

import asyncio
import os
import termios
import tty
from collections import deque
from dataclasses import dataclass, field

# termios speed constant -> bits per second
SPEEDS = {
    getattr(termios, f"B{rate}"): rate
    for rate in (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
    if hasattr(termios, f"B{rate}")
}
_SIZE = {termios.CS5: 5, termios.CS6: 6, termios.CS7: 7, termios.CS8: 8}


def char_seconds(fd: int, bits_override: int | None = None) -> float:
    """The time one character takes at the settings of the pty behind `fd`."""
    attrs = termios.tcgetattr(fd)
    cflag, speed = attrs[2], attrs[5]
    rate = SPEEDS.get(speed, 9600)
    if bits_override is not None:
        return bits_override / rate
    bits = 1 + _SIZE.get(cflag & termios.CSIZE, 8) + (1 if cflag & termios.PARENB else 0)
    bits += 2 if cflag & termios.CSTOPB else 1
    return bits / rate


@dataclass(eq=False)
class _Direction:
    """Bytes on their way from one end to the other, each with the moment it arrives."""

    source: int  # the master fd the bytes are read from
    target: int  # the master fd they are written to
    settings: int  # a slave fd whose termios are the sending side's
    pending: deque[tuple[float, int]] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    carried: int = 0


class PacedLine:
    """Two pty ends joined by a relay that delays each character by its time on the wire.

    `bits_per_char` overrides the character frame read from the ports (a pty here refuses
    parity, so an IEC 62056-21 line's 7E1 can be paced as the 10 bits it takes)."""

    def __init__(self, bits_per_char: int | None = None) -> None:
        self.bits_per_char = bits_per_char
        self.gateway_end = ""
        self.meter_end = ""
        self._fds: list[int] = []
        self._directions: list[_Direction] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._free_at = 0.0  # when the line is next free (both directions share it)
        self.dropped = 0
        self.busy_seconds = 0.0  # the line's time taken by the characters carried so far
        # the meters' turnaround: from the last character of a request reaching them to their answer
        # beginning (their reaction, and their process's scheduling); the benchmark's wire limit counts it
        self.meter_seconds = 0.0
        # the relay's own lateness: how long after its time the last character of each burst was
        # handed on (the relay is a Python program waking every ~0.1 ms, a line is not); the rig's,
        # not the line's nor the poller's, so the benchmark counts it with the wire
        self.late_seconds = 0.0
        self._request_ends: float | None = None  # when the last request's last character reached the meters

    async def start(self) -> PacedLine:
        loop = asyncio.get_running_loop()
        a_master, a_slave = os.openpty()  # the gateway's side
        b_master, b_slave = os.openpty()  # the meters' side
        self._fds = [a_master, a_slave, b_master, b_slave]
        for fd in (a_slave, b_slave):
            tty.setraw(fd)  # no echo, no line editing: bytes as they are
        for fd in (a_master, b_master):
            os.set_blocking(fd, False)
        # Our own slave descriptors stay open: a port closed and opened again by the gateway (a
        # reopen) finds the same line, and reading a master never fails for want of a slave.
        self.gateway_end, self.meter_end = os.ttyname(a_slave), os.ttyname(b_slave)
        self._directions = [_Direction(a_master, b_master, a_slave), _Direction(b_master, a_master, b_slave)]
        for d in self._directions:
            loop.add_reader(d.source, self._arrived, d)
            self._tasks.append(loop.create_task(self._deliver(d)))
        return self

    def _arrived(self, d: _Direction) -> None:
        try:
            data = os.read(d.source, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # no end open (EIO): nothing to carry
            return
        now = asyncio.get_running_loop().time()
        char = char_seconds(d.settings, self.bits_per_char)
        to_meters = d is self._directions[0]
        if not to_meters and self._request_ends is not None:
            self.meter_seconds += max(0.0, now - self._request_ends)
            self._request_ends = None
        at = max(now, self._free_at)
        self.busy_seconds += char * len(data)
        for byte in data:
            at += char
            d.pending.append((at, byte))
        self._free_at = at
        d.wake.set()

    async def _deliver(self, d: _Direction) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not d.pending:
                d.wake.clear()
                await d.wake.wait()
                continue
            wait = d.pending[0][0] - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            now = loop.time()
            out = bytearray()
            due = now
            while d.pending and d.pending[0][0] <= now:
                due, byte = d.pending.popleft()
                out.append(byte)
            burst_ends = not d.pending
            while out:
                try:
                    written = os.write(d.target, out)
                except BlockingIOError:  # the receiving end is slow to read: wait for room
                    await asyncio.sleep(0.001)
                    continue
                except OSError:
                    self.dropped += len(out)  # nobody has that end open: lost, as on a line
                    break
                d.carried += written
                del out[:written]
            if burst_ends:
                handed = loop.time()
                self.late_seconds += max(0.0, handed - due)
                if d is self._directions[0]:
                    self._request_ends = handed

    @property
    def carried(self) -> tuple[int, int]:
        """Bytes carried from the gateway to the meters and back."""
        return self._directions[0].carried, self._directions[1].carried

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for d in self._directions:
            loop.remove_reader(d.source)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for fd in self._fds:
            os.close(fd)
        self._fds = []
