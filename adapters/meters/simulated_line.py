"""The transport half of every simulated meter line (Mercury, Mercury 200, IEC 62056-21,
DLMS): answering on a TCP port, as a transparent RS-485/Ethernet converter does (each connection
is the line), or on a serial device such as one end of a socat pty pair; and stopping with the
answers still pending. Each protocol's simulator gives only `side()`, the asyncio protocol that
answers one connection byte for byte. (The Modbus meters are pymodbus servers: simulator.py.)"""

from __future__ import annotations

import asyncio
from typing import Any


class SimulatedLine:
    """One line of simulated meters; `side(serial=...)` answers one connection or device."""

    def __init__(self) -> None:
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._serial_transport: Any = None
        self._tasks: set[asyncio.Task[None]] = set()  # answers being prepared (a meter's reaction time)

    def side(self, *, serial: bool) -> asyncio.Protocol:
        """The meters' end of one connection (`serial`: a device whose speed may change)."""
        raise NotImplementedError

    def later(self, coro: Any) -> None:
        """Answer in a task of the line's own, so that `stop` cancels what is still pending."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """A transparent converter on `host:port` (0: a free port); the port it listens on."""
        self._server = await asyncio.get_running_loop().create_server(
            lambda: self.side(serial=False), host, port
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def start_serial(self, device: str, baudrate: int = 9600, **frame: Any) -> None:
        """Answer on a serial device (8N1 unless `frame` says `bytesize`, `parity`, `stopbits`)."""
        import serial_asyncio_fast

        self._serial_transport, _ = await serial_asyncio_fast.create_serial_connection(
            asyncio.get_running_loop(), lambda: self.side(serial=True), device, baudrate=baudrate, **frame
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._serial_transport is not None:
            self._serial_transport.close()
            self._serial_transport = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
