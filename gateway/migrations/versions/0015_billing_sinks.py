"""billing sinks: delivery state per sink and batch

Revision ID: 0015
Revises: 0014

`billing_sinks` and `sink_deliveries` (gateway/store/schema_sinks.py) record which batch each
sink has delivered; the index on `batches.committed_at` finds the committed batches a `copy`
sink has still to deliver.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "billing_sinks",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("copied_through", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_billing_sinks")),
    )
    op.create_table(
        "sink_deliveries",
        sa.Column("sink", sa.String(32), nullable=False),
        sa.Column("batch_id", sa.String(36), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_sink_deliveries_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("sink", "batch_id", name=op.f("pk_sink_deliveries")),
    )
    op.create_index("ix_sink_deliveries_open", "sink_deliveries", ["sink", "delivered_at"])
    op.create_index("ix_batches_committed", "batches", ["committed_at"])


def downgrade() -> None:
    op.drop_index("ix_batches_committed", table_name="batches")
    op.drop_index("ix_sink_deliveries_open", table_name="sink_deliveries")
    op.drop_table("sink_deliveries")
    op.drop_table("billing_sinks")
