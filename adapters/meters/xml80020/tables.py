"""The head-end files imported (declared as `meter_gateway.tables`; migration 0018).

`headend_files`: one row per import of an XML 80020/80040 file (the command line or the watched
folder): what it was (its SHA-256, name, class, number, sender, day), how it went (counts of its
values by outcome) and when. The same file imported again is recognised by its SHA-256 and said
so; its values are recognised in `meter_intervals` anyway, so a second import changes nothing.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from gateway.store.schema import Id, UtcDateTime, metadata

headend_files = Table(
    "headend_files",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("message_class", String(8), nullable=True),  # 80020 or 80040 (None: unreadable)
    Column("number", String(40), nullable=True),
    Column("sender_inn", String(12), nullable=True),
    Column("day", String(10), nullable=True),  # YYYY-MM-DD the values are of
    Column("via", String(16), nullable=False),  # "cli" or "folder"
    Column("imported_at", UtcDateTime(), nullable=False),
    Column("values", Integer, nullable=False, default=0),
    Column("stored", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("conflicts", Integer, nullable=False, default=0),
    Column("refused", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),  # values of channels not mapped
    Column("error", Text, nullable=True),  # why the file as a whole was refused
    Index("ix_headend_files_sha256", "sha256"),
)
