"""What `meter-gateway demo` adds for the telephone menu: the FastAGI server on its configured
address, for an Asterisk on the same machine."""

from __future__ import annotations

from typing import Any

from adapters.ivr.config import IvrConfig
from gateway.plugins import DemoPart


def demo_config(config: Any) -> DemoPart:
    ivr = config.section("ivr", IvrConfig).model_copy(update={"enabled": True})
    return DemoPart(
        overrides={"ivr": ivr},
        hints=[
            f"Telephone: Asterisk's AGI(agi://{ivr.host}:{ivr.port}/readings) (deploy/asterisk/extensions.conf)"
        ],
    )
