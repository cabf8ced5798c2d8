"""Configuration: one TOML file, every key overridable by `GATEWAY_<SECTION>_<KEY>`.

The schema is a set of pydantic models; a bad value stops start-up with a message that names
the key (`calendar.cutoff_day`) and what is wrong with it. The core's sections are defined here;
a door's section is defined in its own package and declared in pyproject.toml
(`meter_gateway.config`, gateway/plugins.py), and `Config` is the core's model with every
declared section added, composed once when this module is imported.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator

from gateway import plugins
from gateway.section import Section


class ConfigError(ValueError):
    """A configuration problem, phrased for the operator: which key, what is wrong."""


S = TypeVar("S", bound=BaseModel)


class DatabaseConfig(Section):
    url: str = "sqlite+aiosqlite:///var/gateway.db"
    auto_upgrade: bool = True  # apply migrations at start-up (`db upgrade` does the same by hand)
    echo: bool = False


class HttpConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    shutdown_timeout_seconds: float = 10.0
    # A slow client holds a connection no longer than this: a request's headers must be complete
    # within header_timeout_seconds of the connection (or of the previous answer on it; also how
    # long an idle keep-alive connection stays open), its body within body_timeout_seconds.
    header_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    body_timeout_seconds: float = Field(60.0, gt=0, le=3600)
    # Reverse proxies whose X-Forwarded-For is believed (addresses or networks, e.g. "10.0.0.0/8"):
    # the client address is then the right-most one in that header not in this list. Empty: the peer.
    trusted_proxies: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or network") from exc
        return value


class CalendarConfig(Section):
    timezone: str = "Europe/Moscow"
    window_start_day: int = Field(15, ge=1, le=28)
    cutoff_day: int = Field(26, ge=2, le=28)
    holidays_override: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(value)
        except Exception as exc:  # ZoneInfoNotFoundError, ValueError on odd strings
            raise ValueError(f"unknown time zone {value!r} (an IANA name like Europe/Moscow)") from exc
        return value

    @model_validator(mode="after")
    def _window_before_cutoff(self) -> CalendarConfig:
        if self.window_start_day >= self.cutoff_day:
            raise ValueError(
                f"window_start_day ({self.window_start_day}) must be before cutoff_day ({self.cutoff_day})"
            )
        return self


class BillingConfig(Section):
    tokens: list[str] = Field(default_factory=list)
    lease_seconds: int = Field(300, ge=1)
    sla_working_days: int = Field(1, ge=1, le=30)
    max_batch: int = Field(5000, ge=1)


class RegistryConfig(Section):
    csv: str | None = None


class RuleThresholds(Section):
    """Validation thresholds for one group of channels (residents, operators, devices)."""

    clock_skew_seconds: int = Field(300, ge=0)  # how far in the future a reading may claim to be
    max_age_days: int = Field(45, ge=1)  # older readings are refused as too old
    default_max_power_kw: Decimal = Decimal("15")  # when the registry gives no permitted power
    # Bands of expected consumption (after SAP IS-U): (upper bound of expected kWh, +%, -%).
    bands: list[tuple[Decimal, int, int]] = Field(
        default_factory=lambda: [
            (Decimal("100"), 70, 40),
            (Decimal("1000"), 60, 30),
            (Decimal("1e12"), 50, 20),
        ]
    )
    band_min_days: int = Field(20, ge=0)  # shorter intervals are too noisy to judge
    band_min_history_days: int = Field(28, ge=0)  # history needed before the band applies
    band_severity: Literal["confirm", "flag", "info"] = "confirm"
    cross_check_tolerance_kwh: Decimal = Decimal("5")
    cross_check_severity: Literal["confirm", "flag", "info"] = "flag"


def _default_rules() -> dict[str, RuleThresholds]:
    return {
        "residents": RuleThresholds(),
        "operators": RuleThresholds(max_age_days=92, band_severity="flag"),
        "devices": RuleThresholds(max_age_days=92, band_severity="flag", band_min_days=20),
    }


class ValidationConfig(Section):
    residents: RuleThresholds = Field(default_factory=lambda: _default_rules()["residents"])
    operators: RuleThresholds = Field(default_factory=lambda: _default_rules()["operators"])
    devices: RuleThresholds = Field(default_factory=lambda: _default_rules()["devices"])


class SendersConfig(Section):
    """`[senders]`: who may speak for an account by SMS and telephone (gateway/senders.py)."""

    # A phone not registered for the account it names: refuse (the reply says how to register),
    # hold (flagged for the back office, code unverified_sender) or accept.
    unverified: Literal["refuse", "hold", "accept"] = "refuse"
    # Readings per phone per clock hour (SMS and IVR together); more are refused, not decided.
    submissions_per_hour: int = Field(20, ge=1)
    # Where residents register a phone; said in the refusal (keep it short: one SMS).
    register_hint: str = Field("в личном кабинете или по телефону 8-800-000-00-00", max_length=60)


class VerificationConfig(Section):
    """`[verification]`: how residents prove they hold an account, at every door (the cabinet's
    sign-in, Telegram linking): the one-time code and the optional digits (gateway/verification.py)."""

    # The one-time code (6 digits) sent by SMS (and, for the cabinet, to the linked Telegram chats).
    code_minutes: int = Field(5, ge=1, le=60)  # how long a code is valid
    code_attempts: int = Field(5, ge=1, le=10)  # wrong entries that void a code
    code_resend_seconds: int = Field(60, ge=10, le=3600)  # at most one code per account and door this often
    code_to_log: bool = False  # also write codes to the gateway's log (the demo; never in production)
    # The old factor, the last 4 digits of a registered phone, instead of a code: off (guessable).
    phone_digits: bool = False


class PrivacyConfig(Section):
    """`[privacy]`: keyed hashes of phones and chat ids, and how long raw messages are kept (gateway/privacy.py)."""

    # Key of the HMAC-SHA256 under which phones and chat ids are kept. Empty: one is generated on
    # first start and kept in the database (better: set one here, kept apart from the database).
    secret: str = ""
    payload_retention_days: int = Field(90, ge=1)  # raw messages of residents are purged after this
    purge_interval_seconds: float = Field(3600.0, gt=0)  # how often the purge job looks for work
    purge_batch: int = Field(1000, ge=1, le=100_000)  # rows purged per transaction

    @field_validator("secret")
    @classmethod
    def _secret_long_enough(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("must be at least 32 characters (e.g. from `openssl rand -base64 32`)")
        return value


class OpsConfig(Section):
    """`[ops]`: who may read `/metrics` and the details of `/healthz` (adapters/ops/http.py)."""

    token: str = ""  # set: both need `Authorization: Bearer <token>`; plain /healthz stays open


class HeldConfig(Section):
    """`[held]`: readings held back from billing never wait forever (gateway/held_job.py)."""

    # An unanswered request to confirm is reminded once through its channel this long after receipt,
    confirm_remind_after_hours: float = Field(6.0, gt=0, le=24 * 31)
    # and goes to the back office (flagged) this long after receipt, at the latest at the start of
    # the last working day before the period's cut-off.
    escalate_after_hours: float = Field(24.0, gt=0, le=24 * 31)
    check_seconds: float = Field(60.0, gt=0)  # how often the job looks for work

    @model_validator(mode="after")
    def _remind_before_escalating(self) -> HeldConfig:
        if self.escalate_after_hours <= self.confirm_remind_after_hours:
            raise ValueError(
                f"escalate_after_hours ({self.escalate_after_hours}) must be after"
                f" confirm_remind_after_hours ({self.confirm_remind_after_hours})"
            )
        return self


class IntakeConfig(Section):
    max_group: int = Field(4000, ge=1)  # submissions sharing one commit at most


class CoreConfig(Section):
    """The core's sections; `Config` adds the doors' (see the module's opening)."""

    if TYPE_CHECKING:
        # A door's section, added at import time: typed code reads it with `section()`.
        def __getattr__(self, name: str) -> Any: ...

    def section(self, name: str, model: type[S]) -> S:
        """The section `[name]` as the door that declared it defines it."""
        value = getattr(self, name)
        if not isinstance(value, model):
            raise TypeError(f"[{name}] is a {type(value).__name__}, not a {model.__name__}")
        return value

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    calendar: CalendarConfig = Field(default_factory=CalendarConfig)
    billing: BillingConfig = Field(default_factory=BillingConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    ops: OpsConfig = Field(default_factory=OpsConfig)
    senders: SendersConfig = Field(default_factory=SendersConfig)
    verification: VerificationConfig = Field(default_factory=VerificationConfig)
    intake: IntakeConfig = Field(default_factory=IntakeConfig)
    held: HeldConfig = Field(default_factory=HeldConfig)


def _compose() -> type[CoreConfig]:
    """The core's model with each declared door's section; named and placed as `Config` of this
    module, so that a configuration pickled for the writer process is found again there."""
    sections = plugins.config_sections()
    clash = sorted(set(sections) & set(CoreConfig.model_fields))
    if clash:
        raise RuntimeError(f"sections declared by a door and by the core: {', '.join(clash)}")
    fields: dict[str, Any] = {name: (model, Field(default_factory=model)) for name, model in sections.items()}
    composed = create_model("Config", __base__=CoreConfig, __module__=__name__, **fields)
    composed.__doc__ = "The whole configuration of one gateway process: the core's sections and the doors'."
    return composed


if TYPE_CHECKING:
    Config = CoreConfig
else:
    Config = _compose()


ENV_PREFIX = "GATEWAY_"


def _env_value(raw: str) -> Any:
    """Environment values are strings; lists and numbers may be given as JSON (`["a","b"]`)."""
    text = raw.strip()
    if text[:1] in "[{":
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return raw
    return raw


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> dict[tuple[str, ...], str]:
    """Overlay `GATEWAY_<SECTION>_<KEY>` variables; unknown ones are an error, not ignored.

    A section made of sub-tables takes `GATEWAY_<SECTION>_<TABLE>_<KEY>`, e.g.
    `GATEWAY_VALIDATION_RESIDENTS_MAX_AGE_DAYS` for `validation.residents.max_age_days`.
    Returns which variable set which key, so that an error can name it.
    """
    sections = Config.model_fields
    origins: dict[tuple[str, ...], str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        for section in sorted(sections, key=len, reverse=True):
            if rest.startswith(section + "_"):
                path = (section, *_env_key_path(section, rest[len(section) + 1 :]))
                table = data
                for part in path[:-1]:
                    table = table.setdefault(part, {})
                    if not isinstance(table, dict):
                        raise ConfigError(f"{name}: [{'.'.join(path[:-1])}] is not a table")
                table[path[-1]] = _env_value(raw)
                origins[path] = name
                break
        else:
            raise ConfigError(f"{name}: no such configuration section (known: {', '.join(sections)})")
    return origins


def _env_key_path(section: str, key: str) -> tuple[str, ...]:
    """`residents_max_age_days` in [validation] -> ("residents", "max_age_days")."""
    annotation = Config.model_fields[section].annotation
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return (key,)
    if key in annotation.model_fields:
        return (key,)
    for sub, field in sorted(annotation.model_fields.items(), key=lambda kv: len(kv[0]), reverse=True):
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel) and key.startswith(sub + "_"):
            return (sub, key[len(sub) + 1 :])
    return (key,)


def _explain(exc: ValidationError, origin: str, env: dict[tuple[str, ...], str] | None = None) -> str:
    env = env or {}
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])
        source = next((env[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in env), None)
        lines.append(f"{source or origin}: {key}: {msg}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read the TOML file (if any) and the environment into a checked `Config`."""
    environ = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        p = Path(path)
        origin = str(p)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{p}: configuration file not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    env_origins = _apply_env(data, environ)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origin, env_origins)) from None
