"""`[ivr]`: the FastAGI server and the menu's timing, declared to the core as the `ivr` section
(pyproject.toml, `meter_gateway.config`)."""

from __future__ import annotations

from pydantic import Field

from gateway.section import Section


class IvrConfig(Section):
    """The telephone menu (adapters/ivr/): a FastAGI server Asterisk calls as agi://HOST:PORT/readings."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(4573, ge=0, le=65535)  # 0: any free port (tests)
    prompts: str | None = None  # the prompt catalogue; default deploy/ivr/prompts.toml
    sounds: str = "meter-gateway"  # where the prompts lie under Asterisk's sounds/<language>/
    timeout_seconds: float = Field(6.0, gt=0, le=30)  # wait for a key before counting silence
    attempts: int = Field(3, ge=1, le=5)  # tries per step before the operator takes over
    operator_variable: str = "IVR_RESULT"  # set to "operator" or "done" before returning to the dialplan
    max_calls: int = Field(200, ge=1)  # calls started at once (environment read); more get the operator
    max_connections: int = Field(400, ge=1)  # open FastAGI connections at once; more are closed at once
    handshake_timeout_seconds: float = Field(5.0, gt=0, le=60)  # the AGI environment must arrive within
    max_line_bytes: int = Field(8192, ge=1024, le=65536)  # a longer AGI line closes the connection
