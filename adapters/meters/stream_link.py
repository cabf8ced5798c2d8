"""The wire under the byte protocols (IEC 62056-21, Mercury): a serial port or a TCP connection to a
transparent RS-485/Ethernet converter, carrying the bytes as they are on the line.

A `StreamLink` sends a request and collects the reply until the driver's `complete` function
says a frame is whole, or a timeout passes: for the reply to begin (`first_byte`), between two
bytes (`idle`) or for the whole reply (`total`), so a meter that stops in the middle of a long
readout is told apart from one that never answered. Failures raise `ReadError` with the kinds the poller counts per meter
(`timeout`, `garbage`, `disconnected`; the drivers add `crc` and `exception`).

Serial ports are opened with pyserial-asyncio-fast (a kept asyncio wrapper of pyserial); the
line settings can change while the port is open (IEC 62056-21 signs on at 300 baud and goes on
at the speed the meter offers). Behind a TCP converter the line's speed is the converter's:
`can_set_line` is False and the drivers stay at the speed they signed on with.

Like the Modbus link, one request is on the link at a time (`lock`), a port that cannot be
opened is retried with growing pauses, and the poller reopens it only when every meter on it
fails.
"""

from __future__ import annotations

import asyncio
import logging
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.meters.pause import pause
from adapters.meters.wire import LineTiming, LinkStats, ReadError, add_parity, strip_parity

log = logging.getLogger(__name__)

MAX_BUFFERED = 65536  # bytes kept from the line between two requests: a meter's reply is far less


class _Collector(asyncio.Protocol):
    """Gathers what arrives from the line and wakes the reader."""

    def __init__(self, soft_parity: str | None = None) -> None:
        self.soft_parity = soft_parity  # E or O: the line's parity bit is checked and taken off here
        self.parity_errors = 0  # characters with a wrong parity bit since the reader last looked
        self.buffer = bytearray()
        self.arrived = asyncio.Event()
        self.lost = False
        self.transport: Any = None
        self.need = 1  # the reader is woken once the buffer holds this many bytes
        self.last_at = 0.0  # monotonic time the last bytes came

    @property
    def wanted(self) -> bool:
        return len(self.buffer) >= self.need

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.soft_parity is not None:
            data, bad = strip_parity(data, self.soft_parity)
            self.parity_errors += bad
        if len(self.buffer) + len(data) > MAX_BUFFERED:
            del self.buffer[: len(self.buffer) + len(data) - MAX_BUFFERED]
        self.buffer += data
        self.last_at = time.monotonic()
        if len(self.buffer) >= self.need:
            self.arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.arrived.set()


# complete(buffer) -> length of the whole frame at the start of the buffer, or None while it is not whole
# (or -k: not whole, and at least k more bytes are needed before it may be: the reader is not woken
# for each byte of a frame whose length it knows); it raises ReadError for bytes that cannot become a reply.
Complete = Callable[[bytes], int | None]
Opener = Callable[[Callable[[], _Collector]], Any]  # awaitable of (transport, protocol)


@dataclass(eq=False)
class StreamLink:
    """One serial port or one TCP converter, carrying one protocol's bytes, one request at a time."""

    name: str  # "/dev/ttyUSB0" or "10.0.0.5:4001"
    serial: bool
    opener: Opener
    timing: LineTiming  # the line's settings now (serial) or the converter's line (TCP)
    latency_ms: int = 50
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    connect_timeout: float = 3.0
    stats: LinkStats = field(default_factory=LinkStats)
    # E or O: the port carries 8N1 and the 7-bit line's parity bit is added and checked here (the
    # bus's `software_parity`: an adapter or converter that cannot frame 7E1 itself)
    soft_parity: str | None = None

    def __post_init__(self) -> None:
        self.sign_on = self.timing  # the settings the port opens with (IEC 62056-21: 300 baud 7E1)
        self._transport: Any = None
        self._collector: _Collector | None = None
        self.lock = asyncio.Lock()
        self._sent_until = 0.0  # monotonic time the last request's last character leaves the port
        self.line_changes: list[int] = []  # baud rates set while open, for tests and health

    @property
    def can_set_line(self) -> bool:
        return self.serial

    @property
    def is_open(self) -> bool:
        return self._collector is not None and not self._collector.lost

    async def ensure_open(self) -> None:
        """Open the port or connection if it is not; ReadError('disconnected') if it cannot."""
        if self.is_open:
            return
        now = time.monotonic()
        if now < self.stats.next_open_at:
            raise ReadError("disconnected", self.stats.last_open_error or "not open")
        self.close()
        try:
            transport, collector = await asyncio.wait_for(
                self.opener(lambda: _Collector(self.soft_parity)), self.connect_timeout
            )
        except (OSError, TimeoutError, ValueError, ImportError, termios.error) as exc:
            self.stats.open_failures += 1
            self.stats.last_open_error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, termios.error):  # the port takes no such character frame
                t = self.timing
                self.stats.last_open_error = (
                    f"the port refuses {t.baudrate} baud {t.bytesize}{t.parity}{t.stopbits} ({exc.args[-1]}); "
                    "for an adapter that cannot frame parity set the bus's software_parity"
                )
            self.stats.open_backoff = min(
                self.backoff_max, max(self.backoff_initial, self.stats.open_backoff * 2)
            )
            self.stats.next_open_at = time.monotonic() + self.stats.open_backoff
            log.warning("meters %s: cannot open (%s)", self.name, self.stats.last_open_error)
            raise ReadError("disconnected", self.stats.last_open_error) from None
        self._transport, self._collector = transport, collector
        self.stats.opened += 1
        self.stats.open_backoff = 0.0
        self.stats.next_open_at = 0.0
        self.stats.last_open_error = None
        log.info("meters %s: open", self.name)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self._collector = None

    def reopen_later(self) -> None:
        """Close now; the next request opens it again (every meter on it failed)."""
        self.stats.reopened += 1
        self.close()

    def set_line(self, timing: LineTiming) -> None:
        """Change the serial port's settings (IEC 62056-21's baud rate change); no-op behind TCP."""
        if not self.serial:
            return
        self.timing = timing
        port = getattr(self._transport, "serial", None)
        if port is not None:
            port.baudrate = timing.baudrate
            port.bytesize = timing.bytesize
            port.parity = timing.parity
            port.stopbits = timing.stopbits
            self.line_changes.append(timing.baudrate)

    async def settle(self, quiet: float, most: float) -> None:
        """Wait until the line has been silent for `quiet` seconds (at most `most`), then forget
        what came: the late tail of a failed exchange must not open the next one."""
        collector = self._collector
        if collector is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + most
        while (left := deadline - loop.time()) > 0:
            collector.arrived.clear()
            try:
                await asyncio.wait_for(collector.arrived.wait(), min(quiet, left))
            except TimeoutError:
                break
            if collector.lost:
                break
        self.discard_input()

    def discard_input(self) -> None:
        """Forget bytes left on the line by an earlier, broken exchange."""
        if self._collector is not None:
            self._collector.buffer.clear()
            self._collector.arrived.clear()
            self._collector.parity_errors = 0

    async def send(self, data: bytes) -> None:
        """Write a request; it leaves at the line's speed, and the reply's timeouts count from
        the moment its last character has left (`drained` waits for that moment)."""
        collector = self._collector
        if collector is None or collector.lost or self._transport is None:
            raise ReadError("disconnected", "connection closed")
        self.stats.requests += 1
        self._transport.write(data if self.soft_parity is None else add_parity(data, self.soft_parity))
        # Behind a TCP converter the bytes leave on the converter's line, out of our sight.
        self._sent_until = time.monotonic() + (self.timing.frame_seconds(len(data)) if self.serial else 0)

    async def drained(self) -> None:
        """Wait until the last request has left the port: a baud rate change before that would
        cut its tail (IEC 62056-21's acknowledgement is sent at the old speed)."""
        await pause(self._sent_until - time.monotonic())

    async def receive(self, complete: Complete, *, first_byte: float, idle: float, total: float) -> bytes:
        """The next whole frame (as `complete` measures it), or ReadError.

        `first_byte`: seconds to wait for the reply to begin; `idle`: longest gap between two bytes
        once it has; `total`: the whole reply's limit (a meter trickling bytes forever is cut off).
        The configured latency is added to the first two."""
        collector = self._collector
        if collector is None:
            raise ReadError("disconnected", "connection closed")
        latency = self.latency_ms / 1000
        start = max(time.monotonic(), self._sent_until)
        try:
            while True:
                if collector.parity_errors:
                    bad, collector.parity_errors = collector.parity_errors, 0
                    collector.buffer.clear()
                    raise ReadError("crc", f"{bad} characters with a wrong parity bit")
                try:
                    size = complete(bytes(collector.buffer)) if collector.buffer else None
                except ValueError as exc:  # the protocol's FrameError: bytes that are no reply
                    kind = getattr(exc, "kind", "garbage")
                    collector.buffer.clear()
                    raise ReadError(kind, str(exc)) from None
                if size is not None and size > 0:
                    frame = bytes(collector.buffer[:size])
                    del collector.buffer[:size]
                    return frame
                if collector.lost:
                    raise ReadError("disconnected", "connection lost during the request")
                collector.need = len(collector.buffer) + (-size if size else 1)
                now = time.monotonic()
                if collector.buffer:  # the reply has begun: the gap since its last byte counts
                    wait = min(collector.last_at + idle + latency, start + total + latency) - now
                else:
                    wait = start + first_byte + latency - now
                if wait <= 0:
                    break
                collector.arrived.clear()
                if collector.wanted:
                    continue
                try:
                    async with asyncio.timeout(wait):
                        await collector.arrived.wait()
                except TimeoutError:
                    continue  # bytes may have come short of `need`: the gap is measured again above
        finally:
            collector.need = 1
        if collector.buffer:
            got = len(collector.buffer)
            collector.buffer.clear()
            raise ReadError("timeout", f"the reply stopped after {got} bytes")
        raise ReadError("timeout", f"no reply in {first_byte + latency:.3f} s")


def serial_stream_link(
    device: str,
    timing: LineTiming,
    *,
    latency_ms: int,
    backoff_initial: float,
    backoff_max: float,
    soft_parity: str | None = None,
) -> StreamLink:
    def opener(factory: Callable[[], _Collector]) -> Any:
        import serial_asyncio_fast  # the serial port library is the door's, imported when a port opens

        return serial_asyncio_fast.create_serial_connection(
            asyncio.get_running_loop(),
            factory,
            device,
            baudrate=timing.baudrate,
            bytesize=timing.bytesize,
            parity=timing.parity,
            stopbits=timing.stopbits,
        )

    return StreamLink(
        device, True, opener, timing, latency_ms, backoff_initial, backoff_max, soft_parity=soft_parity
    )


def tcp_stream_link(
    host: str,
    port: int,
    timing: LineTiming,
    *,
    latency_ms: int,
    connect_timeout: float,
    backoff_initial: float,
    backoff_max: float,
    soft_parity: str | None = None,
) -> StreamLink:
    def opener(factory: Callable[[], _Collector]) -> Any:
        return asyncio.get_running_loop().create_connection(factory, host, port)

    return StreamLink(
        f"{host}:{port}",
        False,
        opener,
        timing,
        latency_ms,
        backoff_initial,
        backoff_max,
        connect_timeout,
        soft_parity=soft_parity,
    )
