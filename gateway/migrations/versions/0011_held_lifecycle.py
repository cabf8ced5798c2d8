"""held readings' lifecycle: the resident notices outbox, audit looked up by reading

Revision ID: 0011
Revises: 0010

`notices` is the outbox of reminders to confirm, "billing has your reading" and "expired"
notices (gateway/store/schema_held.py). The audit index serves the billing SLA view, which
shows when a held reading was released.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notices",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("receipt", _ID, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
        sa.UniqueConstraint("receipt", "kind", "channel", "recipient", name="uq_notices_once"),
    )
    op.create_index("ix_notices_open", "notices", ["done_at", "channel"])
    op.create_index("ix_audit_reading", "audit", ["reading_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_reading", table_name="audit")
    op.drop_index("ix_notices_open", table_name="notices")
    op.drop_table("notices")
