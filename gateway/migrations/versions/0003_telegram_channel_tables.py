"""telegram channel tables

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "telegram_links",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", _ID, autoincrement=False, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reminders", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_telegram_links_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("chat_id", "account_id", name=op.f("pk_telegram_links")),
    )
    op.create_table(
        "telegram_link_attempts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telegram_link_attempts")),
    )
    op.create_index("ix_telegram_link_attempts_chat", "telegram_link_attempts", ["chat_id", "at"])
    op.create_index("ix_telegram_link_attempts_account", "telegram_link_attempts", ["account", "at"])
    op.create_table(
        "telegram_fsm",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=128), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_telegram_fsm")),
    )
    op.create_index("ix_telegram_fsm_chat_id", "telegram_fsm", ["chat_id"])
    op.create_table(
        "telegram_updates",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("replies", sa.Text(), nullable=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("bot_id", "update_id", name=op.f("pk_telegram_updates")),
    )


def downgrade() -> None:
    op.drop_table("telegram_updates")
    op.drop_index("ix_telegram_fsm_chat_id", table_name="telegram_fsm")
    op.drop_table("telegram_fsm")
    op.drop_index("ix_telegram_link_attempts_account", table_name="telegram_link_attempts")
    op.drop_index("ix_telegram_link_attempts_chat", table_name="telegram_link_attempts")
    op.drop_table("telegram_link_attempts")
    op.drop_table("telegram_links")
