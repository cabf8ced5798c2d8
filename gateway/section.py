"""The base of every configuration section, the core's and each door's: unknown keys are errors.

Doors declare their sections' models in their own packages (gateway/plugins.py); they import
this module and pydantic, nothing else of the core, because `gateway.config` loads them while
it is being imported.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
