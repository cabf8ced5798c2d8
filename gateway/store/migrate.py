"""Schema migrations (Alembic), run from `meter-gateway db upgrade` and at start-up.

Running them again is a no-op (Alembic's `alembic_version` row says where the database is). On
PostgreSQL, where several gateways share a database and may start at once, the whole upgrade
runs in one transaction under an advisory lock: the second waits, then finds nothing to do.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.resources import package_path

MIGRATIONS = package_path("gateway", "migrations")


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


_UPGRADE_LOCK = 0x6D67_6D69_6772  # PostgreSQL advisory lock key of schema upgrades ("mgmigr")


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database behind `engine` to `revision` (all migrations by default)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))

    def _upgrade(connection: object) -> None:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # held until this transaction ends (see the opening)
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
        await conn.run_sync(_upgrade)
