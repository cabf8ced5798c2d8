"""How the telephone menu enters `meter-gateway run`: with `[ivr] enabled`, the menu is checked
against the contact-centre standard and its prompt catalogue, then the FastAGI server is served in
the background, each call answered by the call dialogue."""

from __future__ import annotations

from aiohttp import web

from adapters.ivr.agi import AgiSession, IvrServer
from adapters.ivr.call import SCRIPT, Call
from adapters.ivr.config import IvrConfig
from adapters.ivr.menu import MENU, CatalogueError, check_menu, load_catalogue
from gateway.config import ConfigError
from gateway.host import Host


def install(host: Host, app: web.Application) -> None:
    """With `[ivr] enabled`: check the menu against the standard, then serve FastAGI in the background."""
    config = host.config.section("ivr", IvrConfig)
    if not config.enabled:
        return
    try:
        catalogue = load_catalogue(config.prompts)
    except CatalogueError as exc:
        raise ConfigError(f"ivr.prompts: {exc}") from None
    problems = check_menu(MENU, catalogue)
    if problems:
        raise ConfigError("ivr: the telephone menu breaks the standard:\n  " + "\n  ".join(problems))

    async def answer(agi: AgiSession, env: dict[str, str], busy: bool) -> str:
        return (await Call(host, config, agi).run(env, busy)).result

    server = IvrServer(config, SCRIPT, answer)
    host.health_probes["ivr"] = server
    host.background.append(server.serve)
