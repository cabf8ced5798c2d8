"""personal data: keyed hashes of SMS senders, partial indexes of raw messages to purge

Revision ID: 0012
Revises: 0011

`sms_messages.sender_key` held an unsalted SHA-256 of the phone, which anyone can reverse by
hashing every number. It cannot be turned into the keyed hash (gateway/privacy.py) without the
phone, so the old values are emptied: the rows stay (a redelivered message still gets its first
reply), they only stop counting towards a sender's hourly reply budget (an hour after the
upgrade nothing is lost) and a "ДА" sent after the upgrade no longer finds a reading that
waited for confirmation before it (the resident confirms it in the cabinet or Telegram, or the
back office decides it).

Opt-outs ("стоп") kept the phone; the column is widened for its keyed hash, which the
gateway writes in place of the phone at its next start (the key is not known here).

The two partial indexes hold only the raw messages the retention job (gateway/retention.py)
still has to purge.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INBOUND_UNPURGED = "payload <> '' AND channel IN ('sms', 'telegram', 'ivr', 'cabinet')"
UPDATES_UNPURGED = "payload <> ''"


def upgrade() -> None:
    op.execute("UPDATE sms_messages SET sender_key = '' WHERE sender_key <> ''")
    # Opt-outs become keyed hashes at the next start-up (adapters/sms/tables.py
    # `hash_plain_optouts`: the key is not known here); the column must hold them.
    with op.batch_alter_table("sms_optouts") as batch:
        batch.alter_column("phone", type_=sa.String(64), existing_type=sa.String(20), existing_nullable=False)
    op.create_index(
        "ix_inbound_unpurged",
        "inbound",
        ["received_at"],
        sqlite_where=sa.text(INBOUND_UNPURGED),
        postgresql_where=sa.text(INBOUND_UNPURGED),
    )
    op.create_index(
        "ix_telegram_updates_unpurged",
        "telegram_updates",
        ["received_at"],
        sqlite_where=sa.text(UPDATES_UNPURGED),
        postgresql_where=sa.text(UPDATES_UNPURGED),
    )


def downgrade() -> None:
    op.drop_index("ix_telegram_updates_unpurged", table_name="telegram_updates")
    op.drop_index("ix_inbound_unpurged", table_name="inbound")
    # The keyed hashes cannot become plain SHA-256 again: the reply budget restarts empty.
    op.execute("UPDATE sms_messages SET sender_key = ''")
    # Hashed opt-outs cannot become phones again, nor fit the old column: they are dropped.
    op.execute("DELETE FROM sms_optouts WHERE phone NOT LIKE '+%'")
    with op.batch_alter_table("sms_optouts") as batch:
        batch.alter_column("phone", type_=sa.String(20), existing_type=sa.String(64), existing_nullable=False)
