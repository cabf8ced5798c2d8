"""sms channel tables

Revision ID: 0002
Revises: 0001

The SMS channel's answers (replayed to redeliveries, counted for the hourly reply budget),
the phones that opted out of reminders, and the log that keeps every reminder to one sending.
Tables as in adapters/sms/tables.py (reminder_log: gateway/store/schema_reminders.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sms_messages",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("sender_key", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("receipt", Id, nullable=True),
        sa.Column("status", sa.String(length=24), nullable=True),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("withheld", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_messages")),
        sa.UniqueConstraint("route", "message_id", name="uq_sms_messages_route_message"),
    )
    op.create_index("ix_sms_messages_sender", "sms_messages", ["sender_key", "received_at"], unique=False)

    op.create_table(
        "sms_optouts",
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_sms_optouts")),
    )

    op.create_table(
        "reminder_log",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("accounts", sa.Text(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_log")),
        sa.UniqueConstraint("channel", "recipient", "period", "kind", name="uq_reminder_log_once"),
    )


def downgrade() -> None:
    op.drop_table("reminder_log")
    op.drop_table("sms_optouts")
    op.drop_index("ix_sms_messages_sender", table_name="sms_messages")
    op.drop_table("sms_messages")
