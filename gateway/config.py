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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


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


class CalendarConfig(_Section):
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


class BillingConfig(_Section):
    tokens: list[str] = Field(default_factory=list)
    lease_seconds: int = Field(300, ge=1)
    sla_working_days: int = Field(1, ge=1, le=30)
    max_batch: int = Field(5000, ge=1)


class DevicesConfig(_Section):
    tokens: list[str] = Field(default_factory=list)
    max_items: int = Field(5000, ge=1)


class SmsConfig(_Section):
    """`[sms]`: Kannel's sms-service route, aggregators' webhooks and SMS reminders (adapters/sms_*.py)."""

    kannel_key: str = ""  # shared secret in the sms-service get-url; empty: the Kannel route is off
    # Kannel's sendsms with its user, e.g. http://127.0.0.1:13013/cgi-bin/sendsms?username=gw&password=..
    # (the gateway adds to, text, charset, coding); empty: no SMS reminders.
    sendsms_url: str = ""
    # Longest reply: 2 concatenated UCS-2 parts carry 2 x 67 characters; one part carries 70.
    reply_max_chars: int = Field(134, ge=70, le=134)
    replies_per_hour: int = Field(10, ge=1)  # per sender; over it the reading is kept, the reply not sent
    twilio_auth_token: str = ""  # empty: the Twilio-compatible webhook is off
    twilio_webhook_url: str = ""  # the URL as configured at the aggregator (when behind a proxy)
    reminders: bool = True  # remind residents by SMS (needs sendsms_url)
    reminder_check_seconds: float = Field(300.0, gt=0)  # how often the reminder job looks for work
    sendsms_timeout_seconds: float = Field(10.0, gt=0)
    # "Показания переданы в расчёт" by SMS too (to the phone the reading came from); Telegram and
    # the cabinet always tell it. Costs an SMS per reading, hence off by default.
    billing_notices: bool = False


class TelegramConfig(_Section):
    """The Telegram bot (adapters/telegram.py): webhook at /channels/telegram/webhook or long polling."""

    enabled: bool = False
    token: str = ""  # from @BotFather: "123456789:AA..."
    mode: Literal["webhook", "polling"] = "webhook"
    # Telegram sends it in X-Telegram-Bot-Api-Secret-Token; 1-256 of A-Z a-z 0-9 _ -
    webhook_secret: str = ""
    api_base: str = "https://api.telegram.org"  # or a self-hosted Bot API server
    webhook_url: str = ""  # public HTTPS URL of the webhook route; set: registered at start-up
    poll_timeout_seconds: int = Field(25, ge=0, le=50)  # long-polling wait of one getUpdates
    link_max_failures: int = Field(5, ge=1)  # wrong second factors per chat within the window
    link_max_failures_per_account: int = Field(10, ge=1)  # ... and per account, from any chat
    link_window_minutes: int = Field(60, ge=1)
    history_limit: int = Field(10, ge=1, le=50)  # submissions per account shown by /history
    reminders: bool = True  # remind linked chats to submit (the reminder job of [sms] runs them)

    @model_validator(mode="after")
    def _usable(self) -> TelegramConfig:
        import re

        if not self.enabled:
            return self
        if not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", self.token):
            raise ValueError("token must be the bot token from @BotFather, like 123456789:AAE...")
        if self.mode == "webhook" and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", self.webhook_secret):
            raise ValueError("webhook mode needs webhook_secret: 1-256 characters of A-Z, a-z, 0-9, _ and -")
        if not self.api_base.startswith(("http://", "https://")):
            raise ValueError("api_base must be an http(s) URL")
        return self


class IvrConfig(_Section):
    """The telephone menu (adapters/ivr_agi.py): a FastAGI server Asterisk calls as agi://HOST:PORT/readings."""

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


class CabinetConfig(_Section):
    """The residents' web cabinet at `/cabinet/` (adapters/cabinet.py)."""

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
    # The one-time code (6 digits) sent by SMS or to the linked Telegram chat(s) is the second factor.
    code_minutes: int = Field(5, ge=1, le=60)  # how long a code is valid
    code_attempts: int = Field(5, ge=1, le=10)  # wrong entries that void a code
    code_resend_seconds: int = Field(60, ge=10, le=3600)  # at most one code per account this often
    code_to_log: bool = False  # also write codes to the gateway's log (the demo; never in production)
    # The old factor, the last 4 digits of a registered phone, instead of a code: off (guessable).
    phone_digits_sign_in: bool = False

    @field_validator("session_key")
    @classmethod
    def _key_long_enough(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("must be a Fernet key or a secret of at least 32 characters")
        return value


class OperatorUser(_Section):
    login: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field(min_length=1, max_length=120)  # the employee's full name, recorded with readings
    password_hash: str = Field(min_length=20)  # argon2 (`meter-gateway operator hash`) or scrypt


class OperatorsConfig(_Section):
    """The operators' desk at `/operator/` (adapters/operator_desk.py)."""

    enabled: bool = True
    users: list[OperatorUser] = Field(default_factory=list)  # besides those added by the CLI


class ModbusMeterConfig(_Section):
    """One meter on a Modbus bus: `{unit, serial, profile}`, or `{unit}` to identify it by its registers."""

    unit: int = Field(ge=0, le=255)  # Modbus unit id (1..247 on a serial line)
    serial: str | None = Field(
        None, min_length=1, max_length=64
    )  # registry serial; read from the meter if omitted
    profile: str | None = Field(None, min_length=1)  # firmware profile id; detected if omitted
    host: str | None = None  # TCP buses: this meter's own address (default: the bus's host/port)
    port: int | None = Field(None, ge=1, le=65535)


class ModbusBusConfig(_Section):
    """`[[modbus.buses]]`: one serial line (rtu) or one set of TCP meters and gateways (tcp)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    transport: Literal["tcp", "rtu"]
    host: str | None = None  # tcp
    port: int = Field(502, ge=1, le=65535)  # tcp
    device: str | None = None  # rtu: /dev/ttyUSB0, /dev/serial/by-id/...
    baudrate: int = Field(9600, ge=300, le=1_000_000)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    meters: list[ModbusMeterConfig] = Field(min_length=1)
    interval_seconds: float = Field(60.0, gt=0)
    max_concurrency: int = Field(32, ge=1, le=10_000)  # tcp: meters read at once
    latency_ms: int = Field(50, ge=0, le=60_000)  # added to computed timeouts: USB adapter, network
    backoff_initial_seconds: float = Field(5.0, gt=0)  # a silent meter waits this, then twice as long...
    backoff_max_seconds: float = Field(600.0, gt=0)  # ...up to this

    @model_validator(mode="after")
    def _transport_keys(self) -> ModbusBusConfig:
        if self.transport == "tcp" and not self.host and any(m.host is None for m in self.meters):
            raise ValueError(f"bus {self.name!r}: transport tcp needs host (on the bus or on every meter)")
        if self.transport == "rtu":
            if not self.device:
                raise ValueError(f"bus {self.name!r}: transport rtu needs device (e.g. /dev/ttyUSB0)")
            if any(m.host is not None or m.port is not None for m in self.meters):
                raise ValueError(f"bus {self.name!r}: host/port of a meter make sense on tcp buses only")
            if any(not 1 <= m.unit <= 247 for m in self.meters):
                raise ValueError(f"bus {self.name!r}: a serial line's unit ids are 1..247")
        seen: set[tuple[str | None, int | None, int]] = set()
        for m in self.meters:
            key = (
                (m.host or self.host, m.port or self.port, m.unit)
                if self.transport == "tcp"
                else (None, None, m.unit)
            )
            if key in seen:
                raise ValueError(f"bus {self.name!r}: unit {m.unit} is listed twice")
            seen.add(key)
        return self


class ModbusConfig(_Section):
    """`[modbus]`: meters the gateway polls itself (adapters/meters/poller.py)."""

    buses: list[ModbusBusConfig] = Field(default_factory=list)
    profiles_dir: str | None = None  # default: firmware_profiles/ of the installation
    lease_seconds: float = Field(
        30.0, ge=1
    )  # a bus polled by a process that stopped is taken over after this

    @model_validator(mode="after")
    def _unique_names(self) -> ModbusConfig:
        names = [b.name for b in self.buses]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"bus names must be unique: {', '.join(dup)}")
        return self


class MqttConfig(_Section):
    """`[mqtt]`: readings that devices publish to an MQTT broker (adapters/mqtt/subscriber.py)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str = ""  # empty: connect anonymously
    password: str = ""
    # Fixed client id: the broker keeps this gateway's session (subscriptions and messages
    # published while it is away) under it. Empty: "meter-gateway-<host name>".
    client_id: str = Field("", max_length=128)
    topics: list[str] = Field(default_factory=lambda: ["meters/+/readings"])
    qos: int = 1  # subscription QoS; only 1 is taken (see _qos)
    reply_topic_prefix: str = ""  # set: each item's verdict goes to <prefix>/<meter>
    keepalive_seconds: int = Field(60, ge=5, le=3600)
    reconnect_initial_seconds: float = Field(1.0, gt=0)  # broker gone: retry after this, doubling...
    reconnect_max_seconds: float = Field(60.0, gt=0)  # ...up to this
    max_in_flight: int = Field(32, ge=1, le=1000)  # messages being decided at once

    @field_validator("topics")
    @classmethod
    def _topic_filters(cls, value: list[str]) -> list[str]:
        for topic in value:
            levels = topic.split("/")
            bad = (
                not topic
                or "#" in topic[:-1]
                or (topic.endswith("#") and levels[-1] != "#")
                or any("+" in level and level != "+" for level in levels)
                or (levels[0] == "$share" and len(levels) < 3)
            )
            if bad:
                raise ValueError(f"{topic!r} is not an MQTT topic filter (like meters/+/readings)")
        return value

    @field_validator("qos")
    @classmethod
    def _qos(cls, value: int) -> int:
        # QoS 0 lets the broker drop readings; QoS 2 passes ownership at PUBREC, before the
        # reading is stored. QoS 1 with the ack sent after the commit loses nothing.
        if value != 1:
            raise ValueError(
                "must be 1 (acknowledged after the reading is stored; 0 and 2 are not supported)"
            )
        return value

    @field_validator("reply_topic_prefix")
    @classmethod
    def _plain_prefix(cls, value: str) -> str:
        if "+" in value or "#" in value or value.endswith("/"):
            raise ValueError("must be a plain topic without wildcards or a trailing / (like meters/replies)")
        return value

    @model_validator(mode="after")
    def _usable(self) -> MqttConfig:
        if self.enabled and not self.topics:
            raise ValueError("topics must list at least one topic filter when enabled")
        if self.password and not self.username:
            raise ValueError("password needs username")
        return self


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


class SendersConfig(_Section):
    """`[senders]`: who may speak for an account by SMS and telephone (gateway/senders.py)."""

    # A phone not registered for the account it names: refuse (the reply says how to register),
    # hold (flagged for the back office, code unverified_sender) or accept.
    unverified: Literal["refuse", "hold", "accept"] = "refuse"
    # Readings per phone per clock hour (SMS and IVR together); more are refused, not decided.
    submissions_per_hour: int = Field(20, ge=1)
    # Where residents register a phone; said in the refusal (keep it short: one SMS).
    register_hint: str = Field("в личном кабинете или по телефону 8-800-000-00-00", max_length=60)


class PrivacyConfig(_Section):
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


class OpsConfig(_Section):
    """`[ops]`: who may read `/metrics` and the details of `/healthz` (adapters/ops_http.py)."""

    token: str = ""  # set: both need `Authorization: Bearer <token>`; plain /healthz stays open


class HeldConfig(_Section):
    """`[held]`: readings held back from billing never wait forever (adapters/held_job.py)."""

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


class IntakeConfig(_Section):
    max_group: int = Field(4000, ge=1)  # submissions sharing one commit at most


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
    cabinet: CabinetConfig = Field(default_factory=CabinetConfig)
    operators: OperatorsConfig = Field(default_factory=OperatorsConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    ops: OpsConfig = Field(default_factory=OpsConfig)
    senders: SendersConfig = Field(default_factory=SendersConfig)
    intake: IntakeConfig = Field(default_factory=IntakeConfig)
    held: HeldConfig = Field(default_factory=HeldConfig)
    modbus: ModbusConfig = Field(default_factory=ModbusConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)


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
