"""`[files]`: partners' files of readings (payment agents, banks, terminals, the portal and app
vendors); declared to the core as the `files` section (pyproject.toml, `meter_gateway.config`).

Shared by the doors that take such files (adapters/partners/: the API, the drop folder and the
command line; adapters/web/: the upload on the operators' desk), like `[devices]` is.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.section import Section, secret

PARTNER_ID = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class Partner(BaseModel):
    """One partner who sends files: its id is the channel's sender (`file:<id>`) and its folder's name."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    id: str = Field(pattern=PARTNER_ID)
    """The partner's short id (a-z, 0-9, - and _): stored as the source of its readings, `file:<id>`."""
    name: str = Field(min_length=1, max_length=200)
    """The partner's name as the desk shows it."""
    layout: str = Field(min_length=1, max_length=40)
    """The id of its files' layout (`meter-gateway layouts check` lists them)."""
    token: str = secret(default="")
    """Its bearer token for `POST /api/v1/files`; empty: it sends files by the drop folder or the desk only."""
    control: bool = False
    """Its rows are the retailer's inspectors' control readings (their handhelds' files): marked as such."""


class FilesConfig(Section):
    """`[files]`: partners' files (adapters/partner_files/, adapters/partners/)."""

    enabled: bool = False
    """Serve `POST /api/v1/files` to the partners' tokens and watch their drop folders."""
    dir: str = "partner-files"
    """Where result files (`results/`) and the partners' drop folders (`drop/<partner>/`) are kept."""
    layouts_dir: str | None = None
    """A folder of the retailer's own layouts (`*.toml`), added to the shipped ones (the same id replaces one)."""
    partners: list[Partner] = Field(default_factory=list)
    """Partners: `id`, `name`, `layout`, `token`."""
    max_file_bytes: int = Field(64 * 1024 * 1024, ge=1024, le=1024**3)
    """Largest file taken (API, desk, drop folder); a larger one is refused whole."""
    max_rows: int = Field(200_000, ge=1, le=5_000_000)
    """Rows per file at most; a longer file is refused whole before anything is decided."""
    chunk_rows: int = Field(1000, ge=1, le=10_000)
    """Rows handed to the intake at once (they share its commits); memory stays flat whatever the file's size."""
    upload_timeout_seconds: float = Field(300.0, gt=0)
    """An upload (API, desk) must arrive within this, else 408 and nothing is imported."""
    drop_poll_seconds: float = Field(10.0, gt=0)
    """How often the drop folders are looked at; a file is taken once its size has not changed between two looks."""

    @field_validator("partners")
    @classmethod
    def _unique(cls, partners: list[Partner]) -> list[Partner]:
        ids = [p.id for p in partners]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"partner ids must differ: {', '.join(twice)} given twice")
        tokens = [p.token for p in partners if p.token]
        if len(tokens) != len(set(tokens)):
            raise ValueError("two partners share a token: each needs its own")
        return partners

    def partner(self, partner_id: str) -> Partner | None:
        return next((p for p in self.partners if p.id == partner_id), None)
