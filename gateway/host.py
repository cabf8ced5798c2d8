"""What a door may use of the running gateway: a small typed interface, not the gateway class.

`gateway/service.py`'s `Gateway` is one implementation; a door's `install(host, app)` receives
it as a `Host` and uses nothing else of it, so a door can be read, tested and changed without
the composition root.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.billing import Billing
from gateway.branches import Branches
from gateway.calendar import WorkCalendar
from gateway.config import Config
from gateway.intake import Intake
from gateway.metrics import Metrics
from gateway.notify import Notifiers

BackgroundTask = Callable[["Host"], Awaitable[None]]
HealthProbe = Callable[[], dict[str, Any]]


class Host(Protocol):
    """The gateway as its doors see it."""

    config: Config  # the whole configuration; a door reads its own section with `config.section`
    clock: Callable[[], datetime]  # the gateway's clock (settable in tests): every "now" comes from it
    calendar: WorkCalendar  # the default branch's periods, working days, notice hours
    branches: Branches  # each account's branch: its periods, due times, notice hours (gateway/branches.py)
    engine: AsyncEngine  # the store, for the door's own tables and the core's read queries
    intake: Intake  # `submit` / `submit_many`: the one way readings enter
    billing: Billing
    metrics: Metrics
    notifiers: Notifiers  # the doors that reach residents: a door adds its notifier in its install
    health_probes: dict[str, HealthProbe]  # name -> probe shown under /healthz
    background: list[BackgroundTask]  # tasks supervised (restarted on failure) while the gateway runs
