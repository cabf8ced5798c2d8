"""One intake decision, written once as coroutines, run on either kind of connection.

`gateway/decide.py` decides a group with `await conn.execute(...)`: on the event loop that is
an `AsyncConnection` (PostgreSQL, an in-memory SQLite). The SQLite writer process
(gateway/writer_process.py) has no event loop and a plain synchronous sqlite3 connection; an
event loop there would cost a good part of its time for nothing to wait on. So it wraps its
connection in `SyncConnection`, whose methods are coroutines that never suspend, and drives the
same decision with `run_to_completion`: one `send(None)` runs it to its end on the calling
thread. The rules thus exist once, and neither path pays for the other's machinery.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from sqlalchemy import Connection, CursorResult, Executable
from sqlalchemy.ext.asyncio import AsyncConnection


class SyncConnection:
    """The async face of a synchronous connection, so that one `Decider.decide` serves both paths.

    Its methods never suspend: a coroutine that awaits only these runs to completion with a
    single `send(None)` (see `run_to_completion`)."""

    def __init__(self, conn: Connection) -> None:
        self.sync = conn
        self.dialect = conn.dialect

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        return self.sync.execute(statement, parameters)

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> CursorResult[Any]:
        return self.sync.exec_driver_sql(statement, parameters)


Conn = AsyncConnection | SyncConnection


def run_to_completion(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that awaits nothing but `SyncConnection` methods, on this thread."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("the intake decision awaited something other than its SQLite connection")
