"""`[cabinet]` and `[operators]`: the residents' web cabinet and the operators' desk, declared to
the core as the `cabinet` and `operators` sections (pyproject.toml, `meter_gateway.config`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from gateway.section import Section, secret


class CabinetConfig(Section):
    """The residents' web cabinet at `/cabinet/` (adapters/web/cabinet.py)."""

    enabled: bool = True
    """Serve the residents' web cabinet at /cabinet/."""
    business: bool = True
    """Also serve the business customers' cabinet at /business/ (sign-in by contract and a contact's phone)."""
    # Secret for the encrypted session cookies: a Fernet key or any string of 32+ characters.
    # Empty: one is generated on first start and kept in the database, so sessions survive restarts.
    session_key: str = secret(default="")
    """Secret of the session cookies (a Fernet key or 32+ characters); empty: generated into the database."""
    session_idle_minutes: int = Field(30, ge=1, le=24 * 60)
    """A session unused this long is signed out."""
    cookie_secure: bool = False
    """Send cookies over HTTPS only (set behind HTTPS)."""
    # Sign-in throttling (gateway/verification.py), also for the operators' desk: failures per
    # account (or login) from one client address that are checked at once; after them each further
    # attempt from that address waits 2, 4, 8 ... seconds, up to lockout_minutes. Never a lockout of
    # the account as such: the holder from another address is not slowed by a stranger's failures.
    max_failures_per_account: int = Field(5, ge=1)
    """Sign-in failures per account (or login) from one address before waits grow."""
    max_failures_per_address: int = Field(20, ge=1)
    """Sign-in failures per client address over all accounts before waits grow."""
    lockout_minutes: int = Field(15, ge=1)
    """The longest wait between attempts; counts quiet for 4x this start over."""
    # Deprecated: true means http.trusted_proxies = ["127.0.0.1", "::1"] when that list is empty.
    trust_forwarded_for: bool = False
    """Deprecated: true means http.trusted_proxies = ["127.0.0.1", "::1"] when that list is empty."""

    @field_validator("session_key")
    @classmethod
    def _key_long_enough(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("must be a Fernet key or a secret of at least 32 characters")
        return value


class OperatorUser(Section):
    login: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    """The employee's login (A-Z a-z 0-9 . _ -)."""
    name: str = Field(min_length=1, max_length=120)
    """The employee's full name, recorded with the readings they enter."""
    password_hash: str = Field(min_length=20)
    """argon2 hash (`meter-gateway operator hash`) or scrypt."""


class OperatorsConfig(Section):
    """The operators' desk at `/operator/` (adapters/web/desk.py)."""

    enabled: bool = True
    """Serve the operators' desk at /operator/."""
    users: list[OperatorUser] = Field(default_factory=list)
    """Employees besides those added by `meter-gateway operator add`."""


class SiteFormConfig(Section):
    """`[site_form]`: the form on the retailer's site for residents who do not sign in
    (adapters/web/site_form.py); its policy and limits are the core's `[senders] site_*`."""

    enabled: bool = False
    """Serve the form without sign-in at /form/ (link to it from the retailer's site)."""
    help_line: str = Field("8-800-000-00-00", max_length=40)
    """Where the answer page sends a resident who wants to know what became of a reading."""
