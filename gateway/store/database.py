"""Opening the database: SQLite (WAL, durable commits) by default, PostgreSQL (asyncpg) to scale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# How long a SQLite connection waits for another's write lock before it gives up.
BUSY_TIMEOUT_MS = 30_000


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, echo: bool = False) -> AsyncEngine:
    """An async engine configured for this gateway's transactions on either database."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_async_engine(url, echo=echo, pool_size=10, max_overflow=10, pool_pre_ping=True)


def sqlite_file_url(engine: AsyncEngine) -> str | None:
    """The URL of the SQLite file behind `engine`, for a synchronous engine on it; None for
    PostgreSQL and for in-memory databases, which another connection would not see."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return url.set(drivername="sqlite").render_as_string(hide_password=False)


def create_sqlite_writer_engine(url: str) -> Engine:
    """A synchronous (sqlite3) engine on the SQLite file `url` (see `sqlite_file_url`) with the
    same settings as the gateway's own, for the intake writer (gateway/writer_process.py),
    except that it leaves checkpoints to gateway/store/checkpoints.py."""
    # check_same_thread=False only so that dispose() may close the connection from another
    # thread; it is used by one thread at a time.
    sync = create_sync_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    _configure_sqlite(sync)

    @event.listens_for(sync, "connect")
    def _writer_settings(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")
        # A group dirties some 9 MB of pages: keep them in memory until the commit writes them
        # to the log once (the default 2 MB cache spills them to the log mid-transaction).
        dbapi_connection.execute("PRAGMA cache_size=-65536")

    return sync


def _configure_sqlite(engine: AsyncEngine | Engine) -> None:
    target = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    # pysqlite's implicit transactions start late and upgrade read locks to write locks, which
    # deadlocks concurrent writers; take the write lock at BEGIN and let busy_timeout queue them.
    @event.listens_for(target, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged reading survives a power cut, not only a process crash; group
        # commit pays for the extra fsync.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(target, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
