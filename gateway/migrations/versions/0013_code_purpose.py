"""one-time codes per door: the purpose a code was issued for (cabinet sign-in, Telegram linking)

Revision ID: 0013
Revises: 0012

One verification serves every door (gateway/verification.py), but a code sent for one door
opens only that door: a code in an SMS that says «вход в личный кабинет» does not link a
Telegram chat, and asking for a code at one door does not void the code of another. Codes
issued before are the cabinet's.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("signin_codes") as batch:
        batch.add_column(sa.Column("purpose", sa.String(16), nullable=False, server_default="cabinet"))


def downgrade() -> None:
    with op.batch_alter_table("signin_codes") as batch:
        batch.drop_column("purpose")
