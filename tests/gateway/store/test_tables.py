"""The migrations and the models agree: `alembic revision --autogenerate` against a database at
the head proposes nothing, on both databases, for every table the core and the doors declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import plugins
from gateway.store.tables import all_tables


async def test_autogenerate_against_an_upgraded_database_proposes_nothing(engine: AsyncEngine) -> None:
    metadata = all_tables()
    async with engine.connect() as conn:
        in_database = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), metadata)
        )
    assert diff == []
    # every table of the models is in the database, and the database holds no table of nobody's
    assert set(metadata.tables) == in_database - {"alembic_version"}


def test_every_declared_door_table_module_is_registered() -> None:
    metadata = all_tables()
    assert "adapters.meters.tables" in plugins.load_tables()
    assert {"modbus_meters", "modbus_leases", "modbus_events"} <= set(metadata.tables)
