"""Configuration: one TOML file, every key overridable by `GATEWAY_<SECTION>_<KEY>`.

The schema is a set of pydantic models; a bad value stops start-up with a message that names
the key (`calendar.cutoff_day`) and what is wrong with it. The core's sections are defined here;
a door's section is defined in its own package and declared in pyproject.toml
(`meter_gateway.config`, gateway/plugins.py), and `Config` is the core's model with every
declared section added, composed once when this module is imported.
"""

from __future__ import annotations

import os
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from gateway import plugins
from gateway.formats import DEFAULT_ENABLED, FormatError, FormatSet, format_set
from gateway.section import Section, secret

# An account's branch as the registry and `[branches.<id>]` name it; "default" is the branch of the
# accounts without one, configured by `[calendar]`.
BRANCH_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
DEFAULT_BRANCH = "default"


class ConfigError(ValueError):
    """A configuration problem, phrased for the operator: which key, what is wrong."""


S = TypeVar("S", bound=BaseModel)


class DatabaseConfig(Section):
    """`[database]`: where readings are kept (gateway/store/)."""

    url: str = "sqlite+aiosqlite:///var/gateway.db"
    """SQLAlchemy URL of the database; postgresql+asyncpg://user@host/db lets several gateways share one."""
    auto_upgrade: bool = True
    """Apply the schema migrations at start-up (`meter-gateway db upgrade` does the same by hand)."""
    echo: bool = False
    """Log every SQL statement (debugging only)."""


class HttpConfig(Section):
    """`[http]`: the HTTP server every HTTP door shares."""

    host: str = "127.0.0.1"
    """Address the HTTP API listens on."""
    port: int = Field(8080, ge=0, le=65535)
    """Port the HTTP API listens on (0: any free port)."""
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Larger request bodies get 413 body_too_large."""
    shutdown_timeout_seconds: float = 10.0
    """How long SIGTERM waits for requests in flight."""
    # A slow client holds a connection no longer than this: a request's headers must be complete
    # within header_timeout_seconds of the connection (or of the previous answer on it; also how
    # long an idle keep-alive connection stays open), its body within body_timeout_seconds.
    header_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    """A request's headers must be complete within this (also the idle keep-alive time)."""
    body_timeout_seconds: float = Field(60.0, gt=0, le=3600)
    """A request body must arrive within this, else 408 body_timeout."""
    # Reverse proxies whose X-Forwarded-For is believed (addresses or networks, e.g. "10.0.0.0/8"):
    # the client address is then the right-most one in that header not in this list. Empty: the peer.
    trusted_proxies: list[str] = Field(default_factory=list, max_length=100)
    """Reverse proxies (addresses or networks) whose X-Forwarded-For is believed."""

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
    """`[calendar]`: the retailer's zone, reading window and working days (gateway/calendar.py)."""

    timezone: str = "Europe/Moscow"
    """The retailer's IANA time zone: periods, cut-offs, working days and notice hours."""
    window_start_day: int = Field(15, ge=1, le=28)
    """Day of the month the reading window opens."""
    cutoff_day: int = Field(26, ge=2, le=28)
    """From this day on, readings count for the next month."""
    holidays_override: str | None = None
    """TOML file with `holidays = [...]` and `workdays = [...]` that differ from the federal calendar."""
    contacts: str = Field("", max_length=60)
    """Where residents ask questions (e.g. "тел. 8-800-000-00-00"), added to the reminders; empty: nothing added."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _known_zone(value)

    @model_validator(mode="after")
    def _window_before_cutoff(self) -> CalendarConfig:
        _check_window(self.window_start_day, self.cutoff_day)
        return self


def _known_zone(value: str) -> str:
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(value)
    except Exception as exc:  # ZoneInfoNotFoundError, ValueError on odd strings
        raise ValueError(f"unknown time zone {value!r} (an IANA name like Europe/Moscow)") from exc
    return value


def _check_window(window_start_day: int, cutoff_day: int) -> None:
    if window_start_day >= cutoff_day:
        raise ValueError(f"window_start_day ({window_start_day}) must be before cutoff_day ({cutoff_day})")


class BranchConfig(Section):
    """`[branches.<id>]`: one branch of the retailer (gateway/branches.py); a key left out is `[calendar]`'s."""

    name: str = Field("", max_length=80)
    """The branch's name as staff see it (the SLA view, the desk); empty: its id."""
    timezone: str | None = None
    """The branch's IANA time zone (periods, cut-offs, working days, notice hours)."""
    window_start_day: int | None = Field(None, ge=1, le=28)
    """Day of the month the branch's reading window opens."""
    cutoff_day: int | None = Field(None, ge=2, le=28)
    """From this day on, the branch's readings count for the next month."""
    holidays_override: str | None = None
    """The branch's own calendar override file (a region's holidays), as `[calendar] holidays_override`."""
    contacts: str | None = Field(None, max_length=60)
    """Where the branch's residents ask questions, added to its reminders."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return None if value is None else _known_zone(value)


class BranchesConfig(Section):
    """`[branches]`: the retailer's branches, one `[branches.<id>]` table each (gateway/branches.py).
    An account's branch is the registry's `branch` column; accounts without one are the default
    branch, whose settings are `[calendar]`."""

    # Each table under [branches] is a branch: pydantic validates these extra keys as BranchConfig.
    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)
    __pydantic_extra__: dict[str, BranchConfig] = Field(init=False)

    @model_validator(mode="after")
    def _ids(self) -> BranchesConfig:
        for branch_id in self.model_extra or {}:
            if not BRANCH_ID.fullmatch(branch_id) or branch_id == DEFAULT_BRANCH:
                raise ValueError(
                    f"branch id {branch_id!r}: 1-32 of a-z 0-9 _ -, starting with a letter or digit,"
                    f" and not {DEFAULT_BRANCH!r} (the accounts without a branch: [calendar])"
                )
        return self

    def declared(self) -> dict[str, BranchConfig]:
        """Each declared branch by id, in the file's order."""
        return dict(self.model_extra or {})


class BillingConfig(Section):
    """`[billing]`: billing's clients and batches (gateway/billing.py)."""

    tokens: list[str] = secret(default_factory=list)
    """Bearer tokens of billing clients."""
    lease_seconds: int = Field(300, ge=1)
    """How long a leased batch waits for its commit before its readings return."""
    sla_working_days: int = Field(1, ge=1, le=30)
    """A reading is due at the end of this many working days after its receipt."""
    max_batch: int = Field(5000, ge=1)
    """Largest `limit` a lease may ask for."""


class RegistryConfig(Section):
    """`[registry]`: the accounts, meters and phones file (gateway/registry.py)."""

    csv: str | None = None
    """Registry CSV loaded at start-up and on reload (SIGHUP); empty: none."""


class RuleThresholds(Section):
    """Validation thresholds for one group of channels (residents, operators, devices)."""

    clock_skew_seconds: int = Field(300, ge=0)
    """How far in the future a reading may be dated."""
    max_age_days: int = Field(45, ge=1)
    """Older readings are refused as too old."""
    default_max_power_kw: Decimal = Decimal("15")
    """Permitted power when the registry gives none."""
    # Bands of expected consumption (after SAP IS-U): (upper bound of expected kWh, +%, -%).
    bands: list[tuple[Decimal, int, int]] = Field(
        default_factory=lambda: [
            (Decimal("100"), 70, 40),
            (Decimal("1000"), 60, 30),
            (Decimal("1e12"), 50, 20),
        ]
    )
    """Expected consumption bands (after SAP IS-U): [upper kWh, +%, -%] each."""
    band_min_days: int = Field(20, ge=0)
    """The band applies only over intervals this long (shorter ones are too noisy)."""
    band_min_history_days: int = Field(28, ge=0)
    """History needed before the band applies."""
    band_severity: Literal["confirm", "flag", "info"] = "confirm"
    """Outside the band: confirm (ask the sender), flag (back office) or info."""
    cross_check_tolerance_kwh: Decimal = Decimal("5")
    """A resident's and a device's readings of one period may differ this much."""
    cross_check_severity: Literal["confirm", "flag", "info"] = "flag"
    """When they differ more: confirm, flag or info."""
    # An inspector's control reading is the trusted value: a reading of this group that departs
    # from the meter's latest one by more than this (plus the meter's usual use in between, x1.5)
    # is held for the back office with both values. None: not compared (devices).
    control_tolerance_kwh: Decimal | None = Field(Decimal("10"), ge=0)
    """A reading may differ from the meter's latest control reading this much (plus usual use between); more: held. Not set: not compared."""


def _default_rules() -> dict[str, RuleThresholds]:
    return {
        "residents": RuleThresholds(),
        "operators": RuleThresholds(max_age_days=92, band_severity="flag"),
        "devices": RuleThresholds(
            max_age_days=92, band_severity="flag", band_min_days=20, control_tolerance_kwh=None
        ),
    }


class ValidationConfig(Section):
    """`[validation]`: thresholds of the checks, per group of channels (gateway/validation/)."""

    residents: RuleThresholds = Field(default_factory=lambda: _default_rules()["residents"])
    """Thresholds for SMS, Telegram, the cabinet and IVR."""
    operators: RuleThresholds = Field(default_factory=lambda: _default_rules()["operators"])
    """Thresholds for the operators' desk."""
    devices: RuleThresholds = Field(default_factory=lambda: _default_rules()["devices"])
    """Thresholds for device push, Modbus and MQTT."""

    @model_validator(mode="before")
    @classmethod
    def _group_defaults(cls, data: Any) -> Any:
        """A group's table sets only the keys it names: the others keep that group's defaults
        (`[validation.operators]` with one key keeps max_age_days 92 and band_severity flag)."""
        if not isinstance(data, dict):
            return data
        defaults = _default_rules()
        return {
            group: {**defaults[group].model_dump(), **value}
            if group in defaults and isinstance(value, dict)
            else value
            for group, value in data.items()
        }


class SendersConfig(Section):
    """`[senders]`: who may speak for an account by SMS and telephone (gateway/senders.py)."""

    # A phone not registered for the account it names: refuse (the reply says how to register),
    # hold (flagged for the back office, code unverified_sender) or accept.
    unverified: Literal["refuse", "hold", "accept"] = "refuse"
    """A reading from a phone not registered for its account: refuse, hold or accept."""
    # Readings per phone per clock hour (SMS and IVR together); more are refused, not decided.
    submissions_per_hour: int = Field(20, ge=1)
    """Readings per phone (SMS and IVR together) per clock hour; more are refused."""
    # Where residents register a phone; said in the refusal (keep it short: one SMS).
    register_hint: str = Field("в личном кабинете или по телефону 8-800-000-00-00", max_length=60)
    """Where residents register a phone, said in the refusal (keep it short: one SMS)."""
    # The form on the retailer's site (no sign-in): whoever sends it is never verified for the
    # account, so its readings are held for the back office, or accepted as they are.
    site_form: Literal["hold", "accept"] = "hold"
    """A reading from the site's form without sign-in: hold it for the back office, or accept it."""
    site_per_address_per_hour: int = Field(10, ge=1)
    """Readings from the site's form per client address per clock hour; more are refused."""
    site_per_account_per_hour: int = Field(3, ge=1)
    """Readings from the site's form per account per clock hour, from all addresses; more are refused."""


class VerificationConfig(Section):
    """`[verification]`: how residents prove they hold an account, at every door (the cabinet's
    sign-in, Telegram linking): the one-time code and the optional digits (gateway/verification.py)."""

    # The one-time code (6 digits) sent by SMS (and, for the cabinet, to the linked Telegram chats).
    code_minutes: int = Field(5, ge=1, le=60)
    """How long a resident's one-time code is valid."""
    code_attempts: int = Field(5, ge=1, le=10)
    """Wrong entries that void a code."""
    code_resend_seconds: int = Field(60, ge=10, le=3600)
    """At most one code per account and door this often."""
    code_to_log: bool = False
    """Also write the codes to the gateway's log (the demo; never in production)."""
    # The old factor, the last 4 digits of a registered phone, instead of a code: off (guessable).
    phone_digits: bool = False
    """Also accept the last 4 digits of a registered phone instead of a code (guessable)."""


class PrivacyConfig(Section):
    """`[privacy]`: keyed hashes of phones and chat ids, and how long raw messages are kept (gateway/privacy.py)."""

    # Key of the HMAC-SHA256 under which phones and chat ids are kept. Empty: one is generated on
    # first start and kept in the database (better: set one here, kept apart from the database).
    secret: str = secret(default="")
    """Key (32+ characters) of the HMAC under which phones and chat ids are kept; empty: generated into the database."""
    payload_retention_days: int = Field(90, ge=1)
    """Residents' raw messages are emptied after this many days."""
    purge_interval_seconds: float = Field(3600.0, gt=0)
    """How often the purge job looks for work."""
    purge_batch: int = Field(1000, ge=1, le=100_000)
    """Rows purged per transaction."""

    @field_validator("secret")
    @classmethod
    def _secret_long_enough(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("must be at least 32 characters (e.g. from `openssl rand -base64 32`)")
        return value


class OpsConfig(Section):
    """`[ops]`: who may read `/metrics` and the details of `/healthz` (adapters/ops/http.py)."""

    token: str = secret(default="")
    """Set: /metrics and the details of /healthz need `Authorization: Bearer <token>`."""


class HeldConfig(Section):
    """`[held]`: readings held back from billing never wait forever (gateway/held_job.py)."""

    # An unanswered request to confirm is reminded once through its channel this long after receipt,
    confirm_remind_after_hours: float = Field(6.0, gt=0, le=24 * 31)
    """An unanswered request to confirm is reminded once this long after receipt."""
    # and goes to the back office (flagged) this long after receipt, at the latest at the start of
    # the last working day before the period's cut-off.
    escalate_after_hours: float = Field(24.0, gt=0, le=24 * 31)
    """Still unconfirmed this long after receipt, the reading goes to the back office."""
    check_seconds: float = Field(60.0, gt=0)
    """How often the held-readings job looks for work."""

    @model_validator(mode="after")
    def _remind_before_escalating(self) -> HeldConfig:
        if self.escalate_after_hours <= self.confirm_remind_after_hours:
            raise ValueError(
                f"escalate_after_hours ({self.escalate_after_hours}) must be after"
                f" confirm_remind_after_hours ({self.confirm_remind_after_hours})"
            )
        return self


class IntakeConfig(Section):
    """`[intake]`: how submissions are decided and committed (gateway/intake.py)."""

    max_group: int = Field(4000, ge=1)
    """Submissions decided in one commit at most (group commit)."""


class TextFormatsConfig(Section):
    """`[text_formats]`: which published SMS formats residents may use (gateway/formats.py)."""

    enabled: list[str] = Field(default_factory=lambda: list(DEFAULT_ENABLED), min_length=1, max_length=50)
    """Declared SMS text formats residents may use, in order; the first one's example is shown in refusals."""
    dir: str | None = None
    """Folder of an operator's own format declarations (*.toml), added to the shipped ones."""

    @model_validator(mode="after")
    def _declared(self) -> TextFormatsConfig:
        self.formats()  # a missing or broken declaration stops start-up, named
        return self

    def formats(self) -> FormatSet:
        """The enabled formats, read once per process (FormatError/ValueError names what is wrong)."""
        try:
            return format_set(tuple(self.enabled), self.dir or None)
        except (FormatError, OSError) as exc:
            raise ValueError(str(exc)) from None


class PhotosConfig(Section):
    """`[photos]`: meter photos residents send with a reading as evidence (gateway/photos.py)."""

    max_bytes: int = Field(10 * 1024 * 1024, ge=64 * 1024, le=50 * 1024 * 1024)
    """A larger photo is not kept (the reading still is); the sender is told."""
    max_pixels: int = Field(50_000_000, ge=1_000_000, le=200_000_000)
    """A photo of more pixels is not opened (a decompression bomb), nor kept."""
    max_side: int = Field(2048, ge=640, le=8192)
    """The kept photo is scaled down to this longest side in pixels."""
    thumb_side: int = Field(320, ge=64, le=1024)
    """The thumbnail's longest side in pixels (the desk's queue shows it)."""


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
    branches: BranchesConfig = Field(default_factory=BranchesConfig)
    billing: BillingConfig = Field(default_factory=BillingConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    ops: OpsConfig = Field(default_factory=OpsConfig)
    senders: SendersConfig = Field(default_factory=SendersConfig)
    verification: VerificationConfig = Field(default_factory=VerificationConfig)
    intake: IntakeConfig = Field(default_factory=IntakeConfig)
    held: HeldConfig = Field(default_factory=HeldConfig)
    text_formats: TextFormatsConfig = Field(default_factory=TextFormatsConfig)
    photos: PhotosConfig = Field(default_factory=PhotosConfig)

    @model_validator(mode="after")
    def _branch_windows(self) -> CoreConfig:
        """A branch's window, with the days it takes from `[calendar]`, must open before its cut-off."""
        for branch_id, branch in self.branches.declared().items():
            start = branch.window_start_day or self.calendar.window_start_day
            cutoff = branch.cutoff_day or self.calendar.cutoff_day
            try:
                _check_window(start, cutoff)
            except ValueError as exc:
                raise ValueError(f"branches.{branch_id}: {exc}") from None
        return self


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
        # The key as the TOML file spells it: modbus.buses[0].meters[1].unit
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])
        source = next((env[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in env), None)
        lines.append(f"{source or origin}: {key}: {msg}" if key else f"{source or origin}: {msg}")
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
