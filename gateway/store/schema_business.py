"""Tables of business customers (gateway/business.py): the contract of an account held by a legal
entity or an entrepreneur, and the contract's contact persons.

A business customer is an account of the registry (`accounts`) whose meters are the contract's
metering points (`meters.point` names each); these tables add what identifies the contract and
who may speak for it. They are written by the registry import only (gateway/registry.py).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, String, Table

from gateway.store.schema import Id, metadata

business_customers = Table(
    "business_customers",
    metadata,
    Column("account_id", Id, ForeignKey("accounts.id"), primary_key=True),
    Column("kind", String(16), nullable=False),  # "legal" | "entrepreneur"
    Column("contract", String(32), nullable=False),  # as the registry writes it
    # The contract number as looked up: upper case, without spaces and "№" (gateway/business.py).
    Column("contract_key", String(32), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("inn", String(12), nullable=False),
    Index("ix_business_customers_inn", "inn"),
)

# The contract's contact persons: a sign-in code goes to a contact's phone (gateway/business.py).
business_contacts = Table(
    "business_contacts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("name", String(120), nullable=False),
    Column("phone", String(20), nullable=True),  # E.164
    Column("email", String(254), nullable=True),
    Index("ix_business_contacts_account", "account_id"),
    Index("ix_business_contacts_phone", "phone"),
)
