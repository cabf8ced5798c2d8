"""What the intake writer has already read: registry rows, kept until the registry changes,
and (in the SQLite writer process) zone states, kept until another connection commits.

Deciding a reading needs its meter (zones, digits, permitted power); reading and converting
those rows was a tenth of the writer's time per reading. The registry changes only through
`meter-gateway import registry`, which bumps `registry_version` in the same transaction, and
the writer checks that one-row table at the start of every group: a change made by any process
(another gateway on the same PostgreSQL, or the CLI) empties the cache before the next group.
Unknown serials and accounts are remembered too (as None), so a device repeating a wrong serial
costs no query; `limit` bounds the memory this takes.
"""

from __future__ import annotations

from gateway.validation.context import MeterInfo, ZoneState


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


class ZoneStateCache:
    """Zone states by meter, as the SQLite writer process last read or wrote them; valid while
    no other connection commits (see `Decider._load_states`)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit  # zone states of about 0.5 KB each
        self.data_version: int | None = None
        self.by_meter: dict[int, list[tuple[tuple[int, str], ZoneState]]] = {}
        self._count = 0

    def check(self, data_version: int) -> None:
        """Forget everything if another connection has committed since (or it grew too big)."""
        if data_version != self.data_version or self._count > self.limit:
            self.clear()
            self.data_version = data_version

    def add(self, meter_ids: list[int], states: dict[tuple[int, str], ZoneState]) -> None:
        """The stored states of these meters (a meter may have none)."""
        for m in meter_ids:
            self.by_meter.setdefault(m, [])
        for key, state in states.items():
            self.by_meter[key[0]].append((key, state))
        self._count += len(states)

    def clear(self) -> None:
        self.by_meter.clear()
        self._count = 0
        self.data_version = None
