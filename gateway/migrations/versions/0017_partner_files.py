"""partners' files: one row per import of a file

Revision ID: 0017
Revises: 0016

`partner_imports` (adapters/partner_files/tables.py) records each import of a partner's file:
partner, layout, file name and SHA-256, how and by whom, the counts of its rows by verdict and
the result file's name.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "partner_imports",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("partner", sa.String(32), nullable=False),
        sa.Column("layout", sa.String(40), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("repeated", sa.Integer(), nullable=False),
        sa.Column("unreadable", sa.Integer(), nullable=False),
        sa.Column("result_name", sa.String(255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_imports")),
    )
    op.create_index("ix_partner_imports_partner_sha256", "partner_imports", ["partner", "sha256"])


def downgrade() -> None:
    op.drop_index("ix_partner_imports_partner_sha256", table_name="partner_imports")
    op.drop_table("partner_imports")
