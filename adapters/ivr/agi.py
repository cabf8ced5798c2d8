"""The AGI protocol and the FastAGI server that Asterisk calls as `AGI(agi://HOST:4573/readings)`.

`AgiSession` speaks AGI on one TCP connection: it reads the `agi_*` environment block, sends one
command per line and parses the `200 result=...` replies, turning a hang-up (`HANGUP` notice,
`result=-1`, `511`, a closed socket) into `AgiHangup` and a refused command (`510`, `520` with its
usage text) into `AgiFailure`. A line longer than `[ivr] max_line_bytes` or a PBX silent for
`IDLE_SECONDS` ends the connection as a hang-up.

`IvrServer` accepts the connections: at most `[ivr] max_connections` open at once (more are
closed before anything is read), the environment block within `[ivr] handshake_timeout_seconds`,
a request for another script than its own returned to the dialplan as "operator". Each started
call is handed to the call dialogue (adapters/ivr/call.py) and counted; the server is the `ivr`
health probe.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.ivr.config import IvrConfig

log = logging.getLogger(__name__)

IDLE_SECONDS = 180.0  # a PBX silent this long (no reply to a command) is taken as gone
MAX_ENV_LINES = 200
_REPLY = re.compile(r"(\d{3})([ -])(.*)")
_RESULT = re.compile(r"result=(\S*)\s*(?:\((.*?)\))?\s*(.*)")


class AgiHangup(Exception):
    """The caller hung up, or the PBX went away."""


class AgiFailure(Exception):
    """The PBX refused a command (510 unknown command, 520 bad syntax) or answered nonsense."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One `200 result=...` reply: the result, the text in parentheses, and any `key=value` rest."""

    result: str
    data: str | None = None
    rest: str = ""


class Writer(Protocol):
    """The connection's writing end as a session uses it: an asyncio.StreamWriter."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


def _quote(arg: str) -> str:
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


class AgiSession:
    """The AGI protocol on one FastAGI connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        self.reader = reader
        self.writer = writer
        self.env: dict[str, str] = {}
        self.hung_up = False

    async def read_env(self) -> dict[str, str]:
        """The `agi_name: value` lines Asterisk sends first, up to the blank line."""
        while True:
            line = await self._line()
            if line == "":
                return self.env
            name, sep, value = line.partition(":")
            if not sep or not name.startswith("agi_"):
                raise AgiFailure(f"not an AGI environment line: {line[:80]!r}")
            self.env[name.strip()] = value.strip()
            if len(self.env) > MAX_ENV_LINES:
                raise AgiFailure("AGI environment too long")

    async def _line(self) -> str:
        try:
            raw = await asyncio.wait_for(self.reader.readline(), IDLE_SECONDS)
        except (TimeoutError, ConnectionError) as exc:
            raise AgiHangup(f"PBX connection lost: {type(exc).__name__}") from None
        except ValueError:  # longer than the reader's limit (`[ivr] max_line_bytes`): not a PBX we know
            raise AgiHangup("a line over the length limit; connection closed") from None
        if not raw.endswith(b"\n"):
            raise AgiHangup("PBX closed the connection")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    async def command(self, *words: str) -> Reply:
        """Send one command; its reply, or AgiHangup / AgiFailure."""
        if self.hung_up:
            raise AgiHangup("caller hung up")
        text = " ".join(words)
        try:
            self.writer.write(text.encode() + b"\n")
            await self.writer.drain()
        except ConnectionError:
            raise AgiHangup("PBX connection lost while sending") from None
        while True:
            line = await self._line()
            if line == "HANGUP":  # the channel hung up; the reply to our command still follows
                self.hung_up = True
                continue
            if line == "":
                continue
            m = _REPLY.fullmatch(line)
            if m is None:
                raise AgiFailure(f"unexpected reply to {words[0]!r}: {line[:80]!r}")
            code, more, rest = int(m.group(1)), m.group(2), m.group(3)
            if more == "-":  # 520-Invalid command syntax. Proper usage follows: ... 520 End of proper usage.
                usage = [rest]
                while True:
                    nxt = await self._line()
                    if nxt.startswith(f"{code} "):
                        break
                    usage.append(nxt)
                raise AgiFailure(f"{code} for {text[:60]!r}: {' '.join(usage)[:200]}")
            if code == 511:  # Command Not Permitted on a dead channel
                self.hung_up = True
                raise AgiHangup("dead channel")
            if code != 200:
                raise AgiFailure(f"{code} for {text[:60]!r}: {rest[:200]}")
            r = _RESULT.fullmatch(rest)
            if r is None:
                raise AgiFailure(f"unexpected reply to {words[0]!r}: {line[:80]!r}")
            return Reply(r.group(1), r.group(2), r.group(3))

    async def _key_command(self, *words: str) -> str | None:
        """A command answered with the key pressed (its ASCII code), 0 for none, -1 on hang-up."""
        reply = await self.command(*words)
        if reply.result == "-1" or not reply.result.lstrip("-").isdigit():
            self.hung_up = True
            raise AgiHangup(f"{words[0]} {words[1]} ended the call")
        code = int(reply.result)
        return chr(code) if code > 0 else None

    async def answer(self) -> None:
        if (await self.command("ANSWER")).result == "-1":
            raise AgiHangup("ANSWER failed")

    async def stream_file(self, name: str, escape: str) -> str | None:
        return await self._key_command("STREAM", "FILE", name, _quote(escape))

    async def say(self, how: str, value: str, escape: str) -> str | None:
        return await self._key_command("SAY", how.upper(), value, _quote(escape))

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        """The key pressed within the timeout, or None."""
        return await self._key_command("WAIT", "FOR", "DIGIT", str(timeout_ms))

    async def set_variable(self, name: str, value: str) -> None:
        await self.command("SET", "VARIABLE", name, _quote(value))

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


# A started call of the server's script: the session, its environment, and whether more than
# `max_calls` calls (this one included) are in progress; returns how the call ended
# ("done", "operator", "hangup", "error"), counted in the probe's outcomes.
CallHandler = Callable[[AgiSession, dict[str, str], bool], Awaitable[str]]


class IvrServer:
    """The FastAGI server, run by `meter-gateway run` as a background task.

    Registered as `host.health_probes["ivr"]`: calling it gives the probe; `port` is the bound
    port (with `[ivr] port = 0` a free one) once `ready` is set.
    """

    def __init__(self, config: IvrConfig, script: str, on_call: CallHandler) -> None:
        self.config = config
        self.script = script  # the one AGI script served: agi://HOST:PORT/<script>
        self.on_call = on_call
        self.port: int | None = None
        self.ready = asyncio.Event()
        self.active = 0  # calls started (environment read), counted against max_calls
        self.calls = 0
        self.connections = 0  # open FastAGI connections, counted against max_connections
        self.refused = 0  # connections closed at once because max_connections were open
        self.outcomes: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def __call__(self) -> dict[str, Any]:
        """The health probe: listening or not, and the calls in progress."""
        status = "ok" if self.ready.is_set() else "down"
        return {
            "status": status,
            "host": self.config.host,
            "port": self.port,
            "active_calls": self.active,
            "calls": self.calls,
            "connections": self.connections,
            "refused_connections": self.refused,
            "outcomes": dict(self.outcomes),
        }

    async def serve(self, host: object) -> None:
        """Listen until cancelled; then end the calls in progress (a confirmed reading still lands)."""
        server = await asyncio.start_server(
            self._handle, self.config.host, self.config.port, backlog=256, limit=self.config.max_line_bytes
        )
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        log.info("FastAGI listening on agi://%s:%s/%s", self.config.host, self.port, self.script)
        try:
            await server.serve_forever()
        finally:
            self.ready.clear()
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        agi = AgiSession(reader, writer)
        if self.connections >= self.config.max_connections:
            # Closed before anything is read: idle sockets cannot pile up without bound.
            self.refused += 1
            if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                log.warning(
                    "FastAGI: %d connections open, [ivr] max_connections reached; %d refused so far",
                    self.connections,
                    self.refused,
                )
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections += 1
        try:
            result = await self._connection(agi)
            self.outcomes[result] = self.outcomes.get(result, 0) + 1
        except asyncio.CancelledError:
            # The server is stopping (serve() cancels the calls in progress). Ending here keeps
            # asyncio's stream callback from logging the cancellation as an unhandled error.
            pass
        finally:
            self.connections -= 1
            if task is not None:
                self._tasks.discard(task)
            await agi.close()

    async def _connection(self, agi: AgiSession) -> str:
        """One connection: the environment within the handshake timeout, then the call."""
        try:
            async with asyncio.timeout(self.config.handshake_timeout_seconds):
                env = await agi.read_env()
        except (AgiHangup, AgiFailure, TimeoutError) as exc:  # not a PBX, or one that left at once
            if isinstance(exc, TimeoutError):  # idle sockets are common and harmless: quietly
                log.info(
                    "FastAGI connection closed: no AGI environment within %ss",
                    self.config.handshake_timeout_seconds,
                )
            else:
                log.warning("FastAGI connection dropped before the call began: %s", exc)
            return "error"
        # Only a started call takes one of `max_calls`: a connection that never sent its
        # environment cannot make a real caller hear "busy".
        self.active += 1
        self.calls += 1
        try:
            script = env.get("agi_network_script", "").split("?")[0].strip("/")
            if script != self.script:
                return await self._unknown_script(agi, script)
            return await self.on_call(agi, env, self.active > self.config.max_calls)
        finally:
            self.active -= 1

    async def _unknown_script(self, agi: AgiSession, script: str) -> str:
        """A request for a script this server does not serve: back to the dialplan's operator."""
        log.warning("FastAGI request for unknown script %r", script[:40])
        try:
            await agi.set_variable(self.config.operator_variable, "operator")
        except AgiHangup:
            return "hangup"
        except AgiFailure as exc:
            log.warning("FastAGI: the PBX refused a command: %s", exc)
        return "error"
