"""e-mail, meter photos and control readings (issue 13)

Revision ID: 0019
Revises: 0018

- `account_emails` (gateway/store/schema.py): the addresses the registry's `emails` column
  allows to submit for an account, as `phones` for SMS.
- `mail_messages` (adapters/mail/tables.py): each message of the readings mailbox handled, with
  what became of its answer.
- `ix_inbound_unpurged` covers the mail door's raw messages too (`mail`): a resident's letter is
  emptied after the retention like an SMS.
- `readings.control` marks the control readings of the retailer's inspectors (false for every
  reading before); `meter_state.ctl_value`, `ctl_taken_at` keep each zone's latest one, which
  later readings are compared with.
- `reading_photos` (gateway/store/schema_photos.py): meter photos kept with their readings.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)

INBOUND_UNPURGED_BEFORE = "payload <> '' AND channel IN ('sms', 'telegram', 'ivr', 'cabinet')"
INBOUND_UNPURGED = "payload <> '' AND channel IN ('sms', 'telegram', 'ivr', 'cabinet', 'mail')"
REPLY_UNPURGED = "reply <> ''"


def _unpurged_index(where: str) -> None:
    op.drop_index("ix_inbound_unpurged", table_name="inbound")
    op.create_index(
        "ix_inbound_unpurged",
        "inbound",
        ["received_at"],
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    op.create_table(
        "account_emails",
        sa.Column("account_id", ID, nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_account_emails_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "email", name=op.f("pk_account_emails")),
    )
    op.create_index("ix_account_emails_email", "account_emails", ["email"])
    op.create_table(
        "mail_messages",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("message_key", sa.String(128), nullable=False),
        sa.Column("sender_key", sa.String(64), nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("receipt", ID, nullable=True),
        sa.Column("status", sa.String(24), nullable=True),
        sa.Column("reply_id", sa.String(255), nullable=True),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_messages")),
        sa.UniqueConstraint("message_key", name=op.f("uq_mail_messages_message_key")),
    )
    op.create_index("ix_mail_messages_sender", "mail_messages", ["sender_key", "received_at"])
    op.create_index("ix_mail_messages_reply_id", "mail_messages", ["reply_id"])
    op.create_index(
        "ix_mail_messages_unpurged",
        "mail_messages",
        ["received_at"],
        sqlite_where=sa.text(REPLY_UNPURGED),
        postgresql_where=sa.text(REPLY_UNPURGED),
    )
    _unpurged_index(INBOUND_UNPURGED)
    with op.batch_alter_table("readings") as batch:
        batch.add_column(sa.Column("control", sa.Boolean(), nullable=False, server_default=sa.text("false")))
    with op.batch_alter_table("meter_state") as batch:
        batch.add_column(sa.Column("ctl_value", sa.String(32), nullable=True))
        batch.add_column(sa.Column("ctl_taken_at", UTC, nullable=True))
    op.create_table(
        "reading_photos",
        sa.Column("inbound_id", ID, nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("sent_bytes", sa.Integer(), nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.Column("thumb", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inbound_id"], ["inbound.id"], name=op.f("fk_reading_photos_inbound_id_inbound")
        ),
        sa.PrimaryKeyConstraint("inbound_id", name=op.f("pk_reading_photos")),
    )
    op.create_index("ix_reading_photos_received", "reading_photos", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_reading_photos_received", table_name="reading_photos")
    op.drop_table("reading_photos")
    with op.batch_alter_table("meter_state") as batch:
        batch.drop_column("ctl_taken_at")
        batch.drop_column("ctl_value")
    with op.batch_alter_table("readings") as batch:
        batch.drop_column("control")
    _unpurged_index(INBOUND_UNPURGED_BEFORE)
    op.drop_index("ix_mail_messages_unpurged", table_name="mail_messages")
    op.drop_index("ix_mail_messages_reply_id", table_name="mail_messages")
    op.drop_index("ix_mail_messages_sender", table_name="mail_messages")
    op.drop_table("mail_messages")
    op.drop_index("ix_account_emails_email", table_name="account_emails")
    op.drop_table("account_emails")
