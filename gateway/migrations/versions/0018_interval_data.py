"""head-end files: one row per import of an XML 80020/80040 file

Revision ID: 0018
Revises: 0017

`headend_files` (adapters/meters/xml80020/tables.py) records each import of a head-end file: its
SHA-256, name, class, number, sender and day, how it came (command line or watched folder) and the
counts of its values by outcome. The values themselves go to `meter_intervals` (migration 0014).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "headend_files",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("message_class", sa.String(8), nullable=True),
        sa.Column("number", sa.String(40), nullable=True),
        sa.Column("sender_inn", sa.String(12), nullable=True),
        sa.Column("day", sa.String(10), nullable=True),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("values", sa.Integer(), nullable=False),
        sa.Column("stored", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("conflicts", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_headend_files")),
    )
    op.create_index("ix_headend_files_sha256", "headend_files", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_headend_files_sha256", table_name="headend_files")
    op.drop_table("headend_files")
