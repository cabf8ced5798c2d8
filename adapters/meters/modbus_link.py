"""The wire under the Modbus poller: one pymodbus client per serial port or TCP endpoint.

A `Link` reads one block of registers and either returns its words or raises `ReadError` with
the kind of failure, which the poller counts per meter:

- `timeout`: nothing usable came back in time;
- `crc`: an RTU frame for this request arrived with a wrong CRC (pymodbus drops such frames and
  would only report a timeout: the `trace_packet` hook sees the bytes before they vanish);
- `garbage`: bytes that are not a reply to this request (wrong unit, wrong function, noise);
- `exception`: the meter answered with a Modbus exception (illegal address, device busy...);
- `disconnected`: the port or connection is not open, or went away during the request.

pymodbus' own retries are off (`retries=0`) and its automatic reconnect too: the poller retries
and backs off per meter, and reopens a port only when every meter on it fails.

Timing on a serial line is computed from the line settings, not fixed: one character is
`1 start + data bits + parity + stop bits` bit times; requests are separated by the silent
interval of 3.5 characters (1.75 ms above 19200 baud, as the Modbus serial line spec says); a
request's timeout is the time to send it, the meter's `response_time_ms` from its profile, the
time to receive the expected reply, the silent interval and the configured adapter latency.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.framer import FramerRTU

from adapters.meters.pause import pause
from adapters.meters.wire import LineTiming, LinkStats, ReadError, rtu_reply_bytes

__all__ = ["LineTiming", "Link", "LinkStats", "ReadError", "rtu_reply_bytes", "serial_link", "tcp_link"]

log = logging.getLogger(__name__)

READ_FUNCTIONS = (3, 4)
TCP_MBAP_BYTES = 7


@dataclass(slots=True)
class _Watch:
    """What the trace hook saw while one request was outstanding."""

    unit: int
    function: int
    count: int
    crc_error: bool = False
    garbage: bool = False
    bytes_seen: int = 0


ClientFactory = Callable[[Callable[[bool, bytes], bytes]], AsyncModbusSerialClient | AsyncModbusTcpClient]


@dataclass(eq=False)
class Link:
    """One serial port or one TCP endpoint, with strictly one request on it at a time."""

    name: str  # "/dev/ttyUSB0" or "10.0.0.5:502"
    rtu: bool
    factory: ClientFactory
    timing: LineTiming | None = None  # serial lines only
    latency_ms: int = 50
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    stats: LinkStats = field(default_factory=LinkStats)

    def __post_init__(self) -> None:
        self._client: AsyncModbusSerialClient | AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()
        self._watch: _Watch | None = None
        self._quiet_since = 0.0  # monotonic time the line last went quiet

    # -- open / close ---------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._client is not None and self._client.connected

    async def ensure_open(self) -> None:
        """Open the port or connection if it is not; raises ReadError('disconnected') if it cannot."""
        if self.is_open:
            return
        async with self._lock:
            if self.is_open:
                return
            now = time.monotonic()
            if now < self.stats.next_open_at:
                raise ReadError("disconnected", self.stats.last_open_error or "not open")
            if self._client is not None:
                self._client.close()
            self._client = self.factory(self._trace)
            ok = False
            try:
                ok = await self._client.connect()
            except Exception as exc:  # pyserial and asyncio raise a variety of OSErrors
                self.stats.last_open_error = f"{type(exc).__name__}: {exc}"
            if not ok:
                self._client.close()
                self._client = None
                self.stats.open_failures += 1
                self.stats.last_open_error = self.stats.last_open_error or "cannot open"
                self.stats.open_backoff = min(
                    self.backoff_max, max(self.backoff_initial, self.stats.open_backoff * 2)
                )
                self.stats.next_open_at = time.monotonic() + self.stats.open_backoff
                log.warning("modbus %s: cannot open (%s)", self.name, self.stats.last_open_error)
                raise ReadError("disconnected", self.stats.last_open_error)
            # pymodbus closes a TCP connection after a few unanswered requests; whether to
            # reopen is the poller's decision (only when every meter behind it fails).
            self._client.set_max_no_responses(1 << 30)
            self.stats.opened += 1
            self.stats.open_backoff = 0.0
            self.stats.next_open_at = 0.0
            self.stats.last_open_error = None
            self._quiet_since = time.monotonic()
            log.info("modbus %s: open", self.name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def reopen_later(self) -> None:
        """Close now; the next request opens it again (every meter on it failed)."""
        self.stats.reopened += 1
        self.close()

    # -- reading --------------------------------------------------------------------------

    def timeout_for(self, count: int, response_ms: int) -> float:
        if self.timing is not None:
            return self.timing.read_timeout(count, response_ms, self.latency_ms)
        return response_ms / 1000 + self.latency_ms / 1000

    async def read(self, unit: int, function: int, address: int, count: int, response_ms: int) -> list[int]:
        """Read `count` registers with function 3 or 4; the words, or ReadError."""
        if function not in READ_FUNCTIONS:
            raise ValueError(f"function {function} is not a register read")
        await self.ensure_open()
        async with self._lock:
            client = self._client
            if client is None or not client.connected:
                raise ReadError("disconnected", "connection closed")
            if self.timing is not None:  # silent interval since the line last went quiet
                wait = self._quiet_since + self.timing.silent_interval - time.monotonic()
                await pause(wait)
            client.ctx.comm_params.timeout_connect = self.timeout_for(count, response_ms)
            watch = self._watch = _Watch(unit, function, count)
            self.stats.requests += 1
            try:
                if function == 3:
                    reply = await client.read_holding_registers(address, count=count, device_id=unit)
                else:
                    reply = await client.read_input_registers(address, count=count, device_id=unit)
            except ConnectionException as exc:
                raise ReadError("disconnected", str(exc)) from None
            except ModbusException as exc:  # no reply in time (pymodbus' ModbusIOException)
                if not client.connected:
                    raise ReadError("disconnected", "connection lost during the request") from None
                if watch.crc_error:
                    raise ReadError("crc", "reply with a wrong CRC") from None
                if watch.garbage:
                    raise ReadError("garbage", "bytes that are not a reply to this request") from None
                raise ReadError(
                    "timeout", f"no reply in {client.ctx.comm_params.timeout_connect:.3f} s"
                ) from exc
            finally:
                self._watch = None
                if watch.bytes_seen == 0:  # nothing came back: the line is quiet since now
                    self._quiet_since = time.monotonic()
            if reply.isError():
                code = getattr(reply, "exception_code", None)
                raise ReadError("exception", f"exception code {code}", code)
            words = list(reply.registers)
            if len(words) != count:
                raise ReadError("garbage", f"{len(words)} registers in the reply, {count} asked")
            return words

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus' trace_packet hook: classify received bytes the framer may silently drop."""
        if sending:
            return data
        # The silent interval before the next request counts from the reply's last byte on the
        # line, not from the end of pymodbus' decoding (Modbus over serial line 2.5.1.1).
        self._quiet_since = time.monotonic()
        watch = self._watch
        if watch is None:
            return data
        watch.bytes_seen = max(watch.bytes_seen, len(data))
        if self.rtu:
            self._check_rtu(watch, data)
        else:
            self._check_tcp(watch, data)
        return data

    @staticmethod
    def _check_rtu(watch: _Watch, data: bytes) -> None:
        if not data:
            return
        if data[0] != watch.unit:
            watch.garbage = True
            return
        if len(data) < 2:
            return
        fc = data[1]
        if fc == watch.function | 0x80:
            size = 5
        elif fc == watch.function:
            if len(data) < 3:
                return
            size = 3 + data[2] + 2
        else:
            watch.garbage = True
            return
        if len(data) < size:
            return
        crc = (data[size - 2] << 8) | data[size - 1]
        if not FramerRTU.check_CRC(data[: size - 2], crc):
            watch.crc_error = True

    @staticmethod
    def _check_tcp(watch: _Watch, data: bytes) -> None:
        if len(data) < TCP_MBAP_BYTES + 1:
            return
        protocol = (data[2] << 8) | data[3]
        fc = data[7]
        if protocol != 0 or data[6] != watch.unit or fc not in (watch.function, watch.function | 0x80):
            watch.garbage = True


def serial_link(
    device: str,
    timing: LineTiming,
    *,
    latency_ms: int,
    backoff_initial: float,
    backoff_max: float,
) -> Link:
    def factory(trace: Callable[[bool, bytes], bytes]) -> AsyncModbusSerialClient:
        return AsyncModbusSerialClient(
            device,
            baudrate=timing.baudrate,
            bytesize=timing.bytesize,
            parity=timing.parity,
            stopbits=timing.stopbits,
            timeout=1.0,
            retries=0,
            reconnect_delay=0,
            name=device,
            trace_packet=trace,
        )

    return Link(device, True, factory, timing, latency_ms, backoff_initial, backoff_max)


def tcp_link(
    host: str,
    port: int,
    *,
    latency_ms: int,
    connect_timeout: float,
    backoff_initial: float,
    backoff_max: float,
) -> Link:
    def factory(trace: Callable[[bool, bytes], bytes]) -> AsyncModbusTcpClient:
        return AsyncModbusTcpClient(
            host,
            port=port,
            timeout=connect_timeout,
            retries=0,
            reconnect_delay=0,
            name=f"{host}:{port}",
            trace_packet=trace,
        )

    return Link(f"{host}:{port}", False, factory, None, latency_ms, backoff_initial, backoff_max)
