"""What every benchmark here shares: free ports, percentiles, the PostgreSQL it may borrow."""

from __future__ import annotations

import asyncio
import os
import socket

PG_ADMIN_URL = os.environ.get("MG_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def pg_admin(sql: str) -> None:
    """Run one statement (CREATE/DROP DATABASE) on the admin database, outside a transaction."""

    async def go() -> None:
        from sqlalchemy import text

        from gateway.store.database import create_engine

        engine = create_engine(PG_ADMIN_URL)
        try:
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(go())
