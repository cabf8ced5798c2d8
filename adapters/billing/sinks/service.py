"""`meter-gateway run`'s part of the billing sinks: a delivery loop per enabled `[sinks.*]`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from adapters.billing.sinks.config import FolderSinkConfig, HttpSinkConfig, NatsSinkConfig, SinksConfig
from gateway.billing_delivery import SinkRunner, SinkSpec, Transport, release_orphans

if TYPE_CHECKING:
    from gateway.host import Host

RUNNERS = web.AppKey("billing_sink_runners", list[SinkRunner])  # read by the SLA route (api.py)


def _transport(settings: object) -> Transport:
    if isinstance(settings, HttpSinkConfig):
        from adapters.billing.sinks.http import HttpSink

        return HttpSink(settings)
    if isinstance(settings, FolderSinkConfig):
        from adapters.billing.sinks.folder import FolderSink

        return FolderSink(settings)
    if isinstance(settings, NatsSinkConfig):
        from adapters.billing.sinks.nats import NatsSink  # nats-py imported only when enabled

        return NatsSink(settings)
    raise TypeError(type(settings).__name__)


def install(host: Host, app: web.Application) -> None:
    """A delivery loop per enabled sink, each in /healthz as `sink:<name>`; at start, the open
    batches of billing sinks no longer configured are returned to the pool."""
    sinks = host.config.section("sinks", SinksConfig).enabled()
    runners = []
    for name, settings in sinks.items():
        spec = SinkSpec(
            name=name,
            role=settings.role,
            batch_size=settings.batch_size,
            interval_seconds=settings.interval_seconds,
            timeout_seconds=settings.timeout_seconds,
            retry_initial_seconds=settings.retry_initial_seconds,
            retry_max_seconds=settings.retry_max_seconds,
        )
        runner = SinkRunner(spec, _transport(settings), host.billing, host.metrics, host.clock)
        runners.append(runner)
        host.background.append(runner.run)
        host.health_probes[f"sink:{name}"] = runner.health
    app[RUNNERS] = runners
    billing_names = {name for name, settings in sinks.items() if settings.role == "billing"}

    async def release_orphaned_batches(host: Host) -> None:
        await release_orphans(host.billing, billing_names, host.clock())

    host.background.append(release_orphaned_batches)
