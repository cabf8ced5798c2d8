"""Typed keys for what the composition root puts into the aiohttp application, where the doors'
request handlers find the core (the HTTP side of `gateway.host.Host`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.billing import Billing
from gateway.branches import Branches
from gateway.calendar import WorkCalendar
from gateway.config import Config
from gateway.intake import Intake
from gateway.metrics import Metrics

CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", AsyncEngine)
INTAKE = web.AppKey("intake", Intake)
BILLING = web.AppKey("billing", Billing)
METRICS = web.AppKey("metrics", Metrics)
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
CALENDAR = web.AppKey("calendar", WorkCalendar)
BRANCHES = web.AppKey("branches", Branches)
HEALTH_PROBES = web.AppKey("health_probes", dict[str, Callable[[], dict[str, Any]]])
MAX_BODY = web.AppKey("max_body", int)
