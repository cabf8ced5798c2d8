"""`[cabinet]` and `[operators]`: the residents' web cabinet and the operators' desk, declared to
the core as the `cabinet` and `operators` sections (pyproject.toml, `meter_gateway.config`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from gateway.section import Section


class CabinetConfig(Section):
    """The residents' web cabinet at `/cabinet/` (adapters/web/cabinet.py)."""

    enabled: bool = True
    # Secret for the encrypted session cookies: a Fernet key or any string of 32+ characters.
    # Empty: one is generated on first start and kept in the database, so sessions survive restarts.
    session_key: str = ""
    session_idle_minutes: int = Field(30, ge=1, le=24 * 60)
    cookie_secure: bool = False  # set true behind HTTPS: cookies are then never sent over plain HTTP
    # Sign-in throttling (gateway/verification.py), also for the operators' desk: failures per
    # account (or login) from one client address that are checked at once; after them each further
    # attempt from that address waits 2, 4, 8 ... seconds, up to lockout_minutes. Never a lockout of
    # the account as such: the holder from another address is not slowed by a stranger's failures.
    max_failures_per_account: int = Field(5, ge=1)
    max_failures_per_address: int = Field(20, ge=1)  # ... and per client address over all accounts
    lockout_minutes: int = Field(15, ge=1)  # the longest wait; counts quiet for 4x this start over
    # Deprecated: true means http.trusted_proxies = ["127.0.0.1", "::1"] when that list is empty.
    trust_forwarded_for: bool = False

    @field_validator("session_key")
    @classmethod
    def _key_long_enough(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("must be a Fernet key or a secret of at least 32 characters")
        return value


class OperatorUser(Section):
    login: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field(min_length=1, max_length=120)  # the employee's full name, recorded with readings
    password_hash: str = Field(min_length=20)  # argon2 (`meter-gateway operator hash`) or scrypt


class OperatorsConfig(Section):
    """The operators' desk at `/operator/` (adapters/web/desk.py)."""

    enabled: bool = True
    users: list[OperatorUser] = Field(default_factory=list)  # besides those added by the CLI
