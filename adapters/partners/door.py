"""Installs the partners' door into `meter-gateway run` (declared as a `meter_gateway.channels`
entry): with `[files] enabled`, the API routes, the drop folders' watcher and the `files` probe
under `/healthz`; always, the deletion of kept files past the retention (retention.py). The layouts and the partners' layouts are checked at start-up either way, so a
mistake stops `run` and `config check` with the key named."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from adapters.partner_files.service import imports_for
from adapters.partners import api
from adapters.partners.drop import DropFolders
from adapters.partners.retention import purge_partner_files
from gateway.host import Host


def install(host: Host, app: web.Application) -> None:
    imports = imports_for(host)  # reads and checks the layouts (ConfigError names the key)

    async def purge_old_files(running: Host) -> None:  # the desk's imports too, whether enabled or not
        await purge_partner_files(running, imports.root)

    host.background.append(purge_old_files)
    if not imports.config.enabled:
        host.health_probes["files"] = lambda: {"status": "disabled", **imports.stats.health()}
        return
    app[api.IMPORTS] = imports
    app.add_routes(api.routes)
    drop = DropFolders(imports)
    drop.prepare()  # the folders exist once the gateway has started: partners may copy at once

    async def watch_drop_folders(_host: Host) -> None:
        await drop.run()

    host.background.append(watch_drop_folders)

    def probe() -> dict[str, Any]:
        status = "degraded" if drop.last_error else "ok"
        partners = [p.id for p in imports.config.partners]
        return {"status": status, "partners": partners, **imports.stats.health(), **drop.health()}

    host.health_probes["files"] = probe
