"""registry version; SQLite times stored in one text form

Revision ID: 0007
Revises: 0006

`registry_version` is bumped by every registry import so that the intake writer, which keeps
the registry rows it has read in memory, knows when to read them again.

Before this revision the SQLite intake path stored aware datetimes through sqlite3's default
adapter ('2026-11-24 04:03:54.214673+00:00', '2026-11-25 21:00:00+00:00') instead of the form
SQLAlchemy writes ('2026-11-24 04:03:54.214673'); both read back alike, but SQLite compares
the text, so the columns are brought to the one form.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME_COLUMNS = {
    "inbound": ("received_at",),
    "readings": ("taken_at", "received_at", "due_at"),
    "meter_state": ("last_taken_at", "dev_taken_at", "res_taken_at"),
}


def upgrade() -> None:
    table = op.create_table(
        "registry_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_version")),
    )
    op.bulk_insert(table, [{"id": 1, "version": 0}])
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, columns in _TIME_COLUMNS.items():
        for column in columns:
            op.execute(
                f"UPDATE {name} SET {column} = substr({column}, 1, length({column}) - 6)"
                f" WHERE {column} LIKE '%+00:00'"
            )
            op.execute(f"UPDATE {name} SET {column} = {column} || '.000000' WHERE length({column}) = 19")


def downgrade() -> None:
    op.drop_table("registry_version")
