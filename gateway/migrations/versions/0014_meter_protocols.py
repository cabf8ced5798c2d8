"""meter protocols: transformer ratios, raw registers, interval data

Revision ID: 0014
Revises: 0013

- `meters.ct_ratio`, `meters.vt_ratio`: a meter behind current/voltage transformers (registry
  columns of the same names); the billed reading is the register times both.
- `readings.raw_value`, `readings.ratio`: the register as read and the ratio applied, kept with
  every reading of such a meter.
- `meter_intervals` (adapters/meters/tables.py): what a polled meter read that billing was not
  sent (the bus's `billing` setting), and interval values imported from head-end files.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("meters") as batch:
        batch.add_column(sa.Column("ct_ratio", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("vt_ratio", sa.String(length=16), nullable=True))
    with op.batch_alter_table("readings") as batch:
        batch.add_column(sa.Column("raw_value", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("ratio", sa.String(length=24), nullable=True))
    op.create_table(
        "meter_intervals",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("meter_serial", sa.String(length=64), nullable=False),
        sa.Column("zone", sa.String(length=4), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.String(length=32), nullable=False),
        sa.Column("raw_value", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meter_intervals")),
        sa.UniqueConstraint("meter_serial", "zone", "kind", "at", name="uq_meter_intervals_point"),
    )
    op.create_index("ix_meter_intervals_serial_at", "meter_intervals", ["meter_serial", "at"])
    op.create_index("ix_meter_intervals_at", "meter_intervals", ["at"])


def downgrade() -> None:
    op.drop_index("ix_meter_intervals_at", table_name="meter_intervals")
    op.drop_index("ix_meter_intervals_serial_at", table_name="meter_intervals")
    op.drop_table("meter_intervals")
    with op.batch_alter_table("readings") as batch:
        batch.drop_column("ratio")
        batch.drop_column("raw_value")
    with op.batch_alter_table("meters") as batch:
        batch.drop_column("vt_ratio")
        batch.drop_column("ct_ratio")
