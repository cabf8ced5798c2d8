"""Every table of the gateway, registered on one `MetaData` in one place.

The core's table modules are imported here by name; each door's table module is found from its
declaration (`meter_gateway.tables` in pyproject.toml, see gateway/plugins.py). Whatever needs
the whole schema (Alembic's environment, tests that empty the database, the check that the
migrations and the models agree) calls `all_tables()` instead of relying on what happens to
have been imported.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from gateway import plugins
from gateway.store import (  # noqa: F401  (imported for the tables they define)
    schema_business,
    schema_held,
    schema_photos,
    schema_reminders,
    schema_senders,
    schema_sinks,
    schema_verification,
)
from gateway.store.schema import metadata


def all_tables() -> MetaData:
    """The metadata with the core's tables and every declared door's."""
    plugins.load_tables()
    return metadata
