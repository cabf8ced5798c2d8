"""The running gateway: one asyncio process with the HTTP server, the intake writer and every
configured channel as tasks under one supervisor, stopped gracefully on SIGTERM.

This is the composition root: it assembles the core (intake, validation, billing, store) and
installs the doors found from their declarations (gateway/plugins.py); it names no door. `Gateway`
is what a door sees of it as a `gateway.host.Host`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import held_job, plugins, privacy, reminders, retention
from gateway.app_keys import (
    BILLING,
    BRANCHES,
    CALENDAR,
    CLOCK,
    CONFIG,
    ENGINE,
    HEALTH_PROBES,
    INTAKE,
    MAX_BODY,
    METRICS,
)
from gateway.billing import Billing
from gateway.branches import Branches
from gateway.calendar import WorkCalendar
from gateway.config import Config
from gateway.host import BackgroundTask
from gateway.http_api import body_deadline, json_errors
from gateway.intake import Clock, Intake, utcnow
from gateway.metrics import Metrics
from gateway.notify import Notifiers
from gateway.registry import import_registry
from gateway.store.database import create_engine
from gateway.store.migrate import upgrade

log = logging.getLogger(__name__)

# The core's own periodic jobs: the purge of raw messages, the period's reminders, the held
# readings' lifecycle and notices (these two send through the doors registered in `notifiers`).
# The doors (channels and HTTP surfaces) are found from their declarations (gateway/plugins.py). Each is a module with `install(host, app)`: it adds its
# routes, background tasks (`host.background`) and health probes (`host.health_probes`), reads
# its own configuration section to decide whether it runs at all, and does not depend on the
# order in which the others are installed.
CORE_JOBS = (retention, reminders, held_job)


class Gateway:
    """Everything one `meter-gateway run` process holds, started and stopped together."""

    def __init__(self, config: Config, clock: Clock = utcnow) -> None:
        self.config = config
        self.clock = clock
        self.metrics = Metrics()
        self.calendar = WorkCalendar(config.calendar.timezone, config.calendar.holidays_override)
        self.branches = Branches(config, self.calendar)  # the default branch's calendar is `calendar`
        self.engine: AsyncEngine = create_engine(config.database.url, echo=config.database.echo)
        self.intake = Intake(self.engine, config, self.calendar, self.metrics, clock)
        self.billing = Billing(self.engine, config.billing.lease_seconds, self.branches)
        self.notifiers = Notifiers()  # filled by the doors' install() in build_app
        self.health_probes: dict[str, Callable[[], dict[str, Any]]] = {}
        self.background: list[BackgroundTask] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def build_app(self) -> web.Application:
        """The aiohttp application: the core's objects under their app keys, then every door's routes."""
        http = self.config.http
        app = web.Application(
            middlewares=[json_errors, body_deadline(http.body_timeout_seconds)],
            client_max_size=http.max_body_bytes,
        )
        app[CONFIG] = self.config
        app[ENGINE] = self.engine
        app[INTAKE] = self.intake
        app[BILLING] = self.billing
        app[METRICS] = self.metrics
        app[CLOCK] = self.clock
        app[CALENDAR] = self.calendar
        app[BRANCHES] = self.branches
        app[HEALTH_PROBES] = self.health_probes
        app[MAX_BODY] = self.config.http.max_body_bytes
        for module in (*CORE_JOBS, *plugins.channel_modules()):
            module.install(self, app)
        return app

    async def start(self) -> None:
        if self.config.database.auto_upgrade:
            await upgrade(self.engine)
        # Before anything is hashed (the SMS reply log, Telegram sources, senders' limits).
        await privacy.prepare(self.engine, self.config, self.clock())
        if self.config.registry.csv:
            report = await import_registry(
                self.engine, self.config.registry.csv, branches=self.config.branches.declared()
            )
            log.info("registry %s: %s", self.config.registry.csv, report.summary().splitlines()[0])
        # Load the federal calendar of this year and the next now, not inside the first
        # decision (tens of ms for each year, which would stall the first group).
        year = self.calendar.local_date(self.clock()).year
        self.branches.preload(year, year + 1)
        await self.intake.start()
        self._runner = web.AppRunner(
            self.build_app(),
            shutdown_timeout=self.config.http.shutdown_timeout_seconds,
            access_log=None,
            # aiohttp closes a connection that has not delivered a whole request head this long
            # after it opened or after the previous answer: the header read timeout.
            keepalive_timeout=self.config.http.header_timeout_seconds,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.http.host, self.config.http.port, backlog=1024)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.http.port
        for task in self.background:  # filled by the adapters' install() in build_app
            self._tasks.append(
                asyncio.create_task(self._supervise(task), name=getattr(task, "__name__", "task"))
            )
        log.info("gateway listening on http://%s:%s", self.config.http.host, self.port)

    async def _supervise(self, task: BackgroundTask) -> None:
        """Restart a failed background task after a pause; one broken channel never stops the rest."""
        while True:
            try:
                await task(self)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s failed; restarting in 5 s", getattr(task, "__name__", task))
                await asyncio.sleep(5)

    async def reload(self) -> None:
        """SIGHUP (`systemctl reload`): import `[registry] csv` again, as `meter-gateway import
        registry` would (the intake sees the change at its next group through registry_version).
        That file is the one thing safely reread under a running gateway; the configuration file is
        read at start only, so a change to it needs a restart."""
        path = self.config.registry.csv
        if not path:
            log.info("reload: no [registry] csv to import; configuration changes need a restart")
            return
        try:
            report = await import_registry(self.engine, path, branches=self.config.branches.declared())
        except (OSError, UnicodeDecodeError, SQLAlchemyError) as exc:
            log.error("reload: registry %s not imported: %s: %s", path, type(exc).__name__, exc)
            return
        log.info("reload: registry %s: %s", path, report.summary().splitlines()[0])

    async def stop(self) -> None:
        """Stop taking requests, finish those in flight, drain the intake, close the database."""
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            # A channel that ignores its cancellation must not keep the process from stopping.
            _, stuck = await asyncio.wait(self._tasks, timeout=self.config.http.shutdown_timeout_seconds)
            for t in stuck:
                log.error("background task %s did not stop in time; abandoning it", t.get_name())
        if self._runner is not None:
            await self._runner.cleanup()  # waits up to shutdown_timeout for in-flight requests
        await self.notifiers.close()
        await self.intake.stop()
        await self.engine.dispose()


async def serve(gateway: Gateway) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully; SIGHUP reloads (`Gateway.reload`)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()
    started = False

    def reload() -> None:
        if not started:  # start-up reads the registry anyway
            log.info("reload: still starting; ignored")
            return
        task = loop.create_task(gateway.reload(), name="reload")
        reloads.add(task)  # held until done: the loop keeps only a weak reference to a task
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)  # before start: SIGHUP's default would end the process
    await gateway.start()
    started = True
    # Everything made by now (modules, configuration, routes, registry) lives as long as the
    # process. Frozen, the cycle collector stops walking it: under load its full collections
    # took ~200 ms each, stalling every request, and ~10 % of the event loop's time in all.
    # A higher first threshold makes the collections that remain rarer.
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await gateway.stop()
