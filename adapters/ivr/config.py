"""`[ivr]`: the FastAGI server and the menu's timing, declared to the core as the `ivr` section
(pyproject.toml, `meter_gateway.config`)."""

from __future__ import annotations

from pydantic import Field

from gateway.section import Section


class IvrConfig(Section):
    """The telephone menu (adapters/ivr/): a FastAGI server Asterisk calls as agi://HOST:PORT/readings."""

    enabled: bool = False
    """Serve FastAGI to Asterisk inside `meter-gateway run`."""
    host: str = "127.0.0.1"
    """Address the FastAGI server listens on."""
    port: int = Field(4573, ge=0, le=65535)
    """Its port (0: any free port)."""
    prompts: str | None = None
    """Prompt catalogue replacing the one shipped in the package."""
    sounds: str = "meter-gateway"
    """Where the prompts lie under Asterisk's sounds/<language>/."""
    timeout_seconds: float = Field(6.0, gt=0, le=30)
    """Wait for a key before counting silence."""
    attempts: int = Field(3, ge=1, le=5)
    """Tries per step before the operator takes over."""
    operator_variable: str = "IVR_RESULT"
    """Channel variable set to "operator" or "done" before returning to the dialplan."""
    max_calls: int = Field(200, ge=1)
    """Calls at once; more go to the operator."""
    max_connections: int = Field(400, ge=1)
    """Open FastAGI connections at once; more are closed."""
    handshake_timeout_seconds: float = Field(5.0, gt=0, le=60)
    """The AGI environment must arrive within this."""
    max_line_bytes: int = Field(8192, ge=1024, le=65536)
    """A longer AGI line closes the connection."""
