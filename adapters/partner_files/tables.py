"""The partners' files table (declared as `meter_gateway.tables`; migration 0017).

`partner_imports`: one row per import of a file (the command line, the API, the desk, the drop
folder), written when it starts and completed when it ends: who sent what (partner, layout,
file name and SHA-256), how and by whom, the counts of its rows by verdict, and the result
file's name. The same file imported again is recognised by (partner, sha256); its rows are
recognised by their message ids in `inbound` anyway, so a second import changes nothing.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from gateway.store.schema import Id, UtcDateTime, metadata

partner_imports = Table(
    "partner_imports",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("partner", String(32), nullable=False),
    Column("layout", String(40), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("via", String(16), nullable=False),  # "cli", "api", "desk", "drop"
    Column("actor", String(128), nullable=False),  # the employee, the token's partner, the folder
    Column("started_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime(), nullable=True),  # None: running, or stopped half-way
    Column("rows", Integer, nullable=False, default=0),
    Column("accepted", Integer, nullable=False, default=0),
    Column("held", Integer, nullable=False, default=0),  # flagged or awaiting confirmation
    Column("rejected", Integer, nullable=False, default=0),
    Column("repeated", Integer, nullable=False, default=0),  # rows already decided before
    Column("unreadable", Integer, nullable=False, default=0),  # rows the layout could not read
    Column("result_name", String(255), nullable=True),
    Column("error", Text, nullable=True),  # why the file as a whole was refused
)
Index("ix_partner_imports_partner_sha256", partner_imports.c.partner, partner_imports.c.sha256)
