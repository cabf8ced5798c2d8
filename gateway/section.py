"""The base of every configuration section, the core's and each door's: unknown keys are errors,
and each key says what it means in a docstring under it.

Doors declare their sections' models in their own packages (gateway/plugins.py); they import
this module and pydantic, nothing else of the core, because `gateway.config` loads them while
it is being imported.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    # A field's docstring (the string under it) is its meaning in one line: `meter-gateway init`
    # writes it above the key in the starter gateway.toml, and a test asks one of every key.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


def secret(**field: Any) -> Any:
    """A key holding a secret (a token, a key): `meter-gateway init` writes a fresh random value
    into the starter gateway.toml (a list gets one). `field` as for pydantic's `Field`."""
    return Field(json_schema_extra={"secret": True}, **field)
