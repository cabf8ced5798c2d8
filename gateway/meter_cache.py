"""Registry rows the intake writer has already read, kept until the registry changes.

Deciding a reading needs its meter (zones, digits, permitted power); reading and converting
those rows was a tenth of the writer's time per reading. The registry changes only through
`meter-gateway import registry`, which bumps `registry_version` in the same transaction, and
the writer checks that one-row table at the start of every group: a change made by any process
(another gateway on the same PostgreSQL, or the CLI) empties the cache before the next group.
Unknown serials and accounts are remembered too (as None), so a device repeating a wrong serial
costs no query; `limit` bounds the memory this takes.
"""

from __future__ import annotations

from gateway.validation.context import MeterInfo


class MeterCache:
    """Meters by serial and by account number, valid for one registry version."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.version: int | None = None
        self.by_serial: dict[str, MeterInfo | None] = {}  # None: no such meter
        self.by_account: dict[str, tuple[MeterInfo, ...] | None] = {}  # every meter; None: no such account

    def check(self, version: int | None) -> None:
        """Forget everything if the registry has changed since it was read (or it grew too big)."""
        if version != self.version or len(self.by_serial) + len(self.by_account) > self.limit:
            self.by_serial.clear()
            self.by_account.clear()
            self.version = version
