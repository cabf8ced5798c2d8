"""branches and business customers (issue 15)

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # An account's branch ([branches.<id>]); NULL: the default branch, as every account was before.
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("branch", sa.String(length=32), nullable=True))
    # A business customer's name of the metering point a meter is.
    with op.batch_alter_table("meters") as batch:
        batch.add_column(sa.Column("point", sa.String(length=128), nullable=True))
    op.create_table(
        "business_customers",
        sa.Column("account_id", Id, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("contract", sa.String(length=32), nullable=False),
        sa.Column("contract_key", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("inn", sa.String(length=12), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_business_customers_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("account_id", name="pk_business_customers"),
        sa.UniqueConstraint("contract_key", name="uq_business_customers_contract_key"),
    )
    op.create_index("ix_business_customers_inn", "business_customers", ["inn"])
    op.create_table(
        "business_contacts",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("account_id", Id, nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_business_contacts_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_business_contacts"),
    )
    op.create_index("ix_business_contacts_account", "business_contacts", ["account_id"])
    op.create_index("ix_business_contacts_phone", "business_contacts", ["phone"])


def downgrade() -> None:
    op.drop_table("business_contacts")
    op.drop_table("business_customers")
    with op.batch_alter_table("meters") as batch:
        batch.drop_column("point")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("branch")
