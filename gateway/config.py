"""Configuration: one TOML file, every key overridable by `GATEWAY_<SECTION>_<KEY>`.

The schema is a set of pydantic models; a bad value stops start-up with a message that names
the key (`calendar.cutoff_day`) and what is wrong with it.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A configuration problem, phrased for the operator: which key, what is wrong."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseConfig(_Section):
    url: str = "sqlite+aiosqlite:///var/gateway.db"
    auto_upgrade: bool = True  # apply migrations at start-up (`db upgrade` does the same by hand)
    echo: bool = False


class HttpConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    shutdown_timeout_seconds: float = 10.0


class CalendarConfig(_Section):
    timezone: str = "Europe/Moscow"
    window_start_day: int = Field(15, ge=1, le=28)
    cutoff_day: int = Field(26, ge=2, le=28)
    holidays_override: str | None = None

    @model_validator(mode="after")
    def _window_before_cutoff(self) -> CalendarConfig:
        if self.window_start_day >= self.cutoff_day:
            raise ValueError("window_start_day must be before cutoff_day")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.timezone)
        except Exception as exc:  # ZoneInfoNotFoundError, ValueError on odd strings
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc
        return self


class BillingConfig(_Section):
    tokens: list[str] = Field(default_factory=list)
    lease_seconds: int = Field(300, ge=1)
    sla_working_days: int = Field(1, ge=1, le=30)
    max_batch: int = Field(5000, ge=1)


class DevicesConfig(_Section):
    tokens: list[str] = Field(default_factory=list)
    max_items: int = Field(5000, ge=1)


class SmsConfig(_Section):
    kannel_key: str = ""
    sendsms_url: str = ""
    reply_max_chars: int = 140


class TelegramConfig(_Section):
    enabled: bool = False
    token: str = ""
    mode: Literal["webhook", "polling"] = "webhook"
    webhook_secret: str = ""
    api_base: str = "https://api.telegram.org"


class IvrConfig(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(4573, ge=0, le=65535)


class RegistryConfig(_Section):
    csv: str | None = None


class RuleThresholds(_Section):
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


class ValidationConfig(_Section):
    residents: RuleThresholds = Field(default_factory=lambda: _default_rules()["residents"])
    operators: RuleThresholds = Field(default_factory=lambda: _default_rules()["operators"])
    devices: RuleThresholds = Field(default_factory=lambda: _default_rules()["devices"])


class IntakeConfig(_Section):
    max_group: int = Field(4000, ge=1)  # submissions sharing one commit at most


class DemoConfig(_Section):
    simulated_meters: int = Field(3, ge=0)
    push_interval_seconds: float = Field(10.0, gt=0)


class Config(_Section):
    """The whole configuration of one gateway process."""

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    calendar: CalendarConfig = Field(default_factory=CalendarConfig)
    billing: BillingConfig = Field(default_factory=BillingConfig)
    devices: DevicesConfig = Field(default_factory=DevicesConfig)
    sms: SmsConfig = Field(default_factory=SmsConfig)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    ivr: IvrConfig = Field(default_factory=IvrConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    intake: IntakeConfig = Field(default_factory=IntakeConfig)
    demo: DemoConfig = Field(default_factory=DemoConfig)


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


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> None:
    """Overlay `GATEWAY_<SECTION>_<KEY>` variables; unknown ones are an error, not ignored."""
    sections = Config.model_fields
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        for section in sorted(sections, key=len, reverse=True):
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1 :]
                data.setdefault(section, {})
                if not isinstance(data[section], dict):
                    raise ConfigError(f"{name}: section [{section}] is not a table")
                data[section][key] = _env_value(raw)
                break
        else:
            raise ConfigError(f"{name}: no such configuration section (known: {', '.join(sections)})")


def _explain(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{origin}: {key}: {msg}")
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
    _apply_env(data, environ)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origin)) from None
