"""Configuration: defaults, TOML, `GATEWAY_<SECTION>_<KEY>` overrides, errors that name the key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import Config, ConfigError, load_config


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path | None = None, /, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env)
    return str(info.value)


def test_defaults() -> None:
    config = load_config(None, {})
    assert config == Config()
    assert config.database.url == "sqlite+aiosqlite:///var/gateway.db"
    assert config.database.auto_upgrade is True
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8080)
    assert config.http.max_body_bytes == 4 * 1024 * 1024
    cal = config.calendar
    assert (cal.timezone, cal.window_start_day, cal.cutoff_day, cal.holidays_override) == (
        "Europe/Moscow",
        15,
        26,
        None,
    )
    assert config.billing.tokens == [] and config.devices.tokens == []
    assert (config.billing.lease_seconds, config.billing.sla_working_days, config.billing.max_batch) == (
        300,
        1,
        5000,
    )
    assert config.devices.max_items == 5000 and config.intake.max_group == 4000
    assert config.registry.csv is None
    v = config.validation
    assert [g.max_age_days for g in (v.residents, v.operators, v.devices)] == [45, 92, 92]
    assert [g.band_severity for g in (v.residents, v.operators, v.devices)] == ["confirm", "flag", "flag"]
    assert v.residents.bands == [
        (Decimal("100"), 70, 40),
        (Decimal("1000"), 60, 30),
        (Decimal("1e12"), 50, 20),
    ]
    assert v.devices.cross_check_tolerance_kwh == Decimal("5")
    assert config.telegram.mode == "webhook" and config.telegram.enabled is False
    assert config.ivr.port == 4573


def test_defaults_are_not_shared_between_configs() -> None:
    a, b = load_config(None, {}), load_config(None, {})
    a.billing.tokens.append("x")
    assert b.billing.tokens == []


def test_env_overrides_ints_lists_bools_and_nested_tables(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[http]\nport = 9000\nhost = "0.0.0.0"\n[billing]\ntokens = ["from-file"]\n')
    config = load_config(
        path,
        {
            "GATEWAY_HTTP_PORT": "9100",
            "GATEWAY_BILLING_TOKENS": '["a", "b"]',
            "GATEWAY_BILLING_LEASE_SECONDS": "60",
            "GATEWAY_DATABASE_AUTO_UPGRADE": "false",
            "GATEWAY_IVR_ENABLED": "1",
            "GATEWAY_VALIDATION_RESIDENTS_MAX_AGE_DAYS": "30",
            "GATEWAY_VALIDATION_DEVICES_BANDS": "[[50, 10, 10]]",
            "GATEWAY_CALENDAR_HOLIDAYS_OVERRIDE": "/etc/holidays.toml",
            "OTHER_VARIABLE": "ignored",
        },
    )
    assert config.http.port == 9100
    assert config.http.host == "0.0.0.0"  # from the file, not overridden
    assert config.billing.tokens == ["a", "b"]
    assert config.billing.lease_seconds == 60
    assert config.database.auto_upgrade is False
    assert config.ivr.enabled is True
    assert config.validation.residents.max_age_days == 30
    assert config.validation.operators.max_age_days == 92  # the other groups keep their defaults
    assert config.validation.residents.band_severity == "confirm"
    assert config.validation.devices.bands == [(Decimal(50), 10, 10)]
    assert config.calendar.holidays_override == "/etc/holidays.toml"


def test_toml_file_values(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        """
[database]
url = "postgresql+asyncpg://gw@db/gateway"
[calendar]
timezone = "Asia/Yekaterinburg"
window_start_day = 10
cutoff_day = 20
[validation.operators]
max_age_days = 120
band_severity = "confirm"
""",
    )
    config = load_config(path, {})
    assert config.database.url == "postgresql+asyncpg://gw@db/gateway"
    assert (config.calendar.timezone, config.calendar.window_start_day, config.calendar.cutoff_day) == (
        "Asia/Yekaterinburg",
        10,
        20,
    )
    assert config.validation.operators.max_age_days == 120
    assert config.validation.operators.band_severity == "confirm"
    assert config.validation.residents.max_age_days == 45


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"GATEWAY_CALENDAR_CUTOFF_DAY": "29"}, "calendar.cutoff_day"),
        ({"GATEWAY_CALENDAR_CUTOFF_DAY": "1"}, "calendar.cutoff_day"),
        ({"GATEWAY_CALENDAR_WINDOW_START_DAY": "0"}, "calendar.window_start_day"),
        ({"GATEWAY_HTTP_PORT": "65536"}, "http.port"),
        ({"GATEWAY_HTTP_PORT": "eighty"}, "http.port"),
        ({"GATEWAY_VALIDATION_RESIDENTS_MAX_AGE_DAYS": "0"}, "validation.residents.max_age_days"),
        ({"GATEWAY_VALIDATION_RESIDENTS_MAX_AGE_DAYS": "many"}, "validation.residents.max_age_days"),
        ({"GATEWAY_BILLING_TOKENS": "not-json"}, "billing.tokens"),
        ({"GATEWAY_BILLING_SLA_WORKING_DAYS": "0"}, "billing.sla_working_days"),
        ({"GATEWAY_TELEGRAM_MODE": "carrier-pigeon"}, "telegram.mode"),
        ({"GATEWAY_HTTP_PROT": "80"}, "http.prot"),
    ],
)
def test_env_errors_name_the_key_and_the_variable(env: dict[str, str], key: str) -> None:
    message = _error(**env)
    [variable] = env
    assert f"{key}:" in message
    assert variable in message


def test_toml_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[calendar]\ncutoff_day = 40\n[validation.residents]\nmax_age_days = -1\n")
    message = _error(path)
    lines = message.splitlines()
    assert f"{path}: calendar.cutoff_day: Input should be less than or equal to 28" in lines
    assert any(
        line.startswith(f"{path}: validation.residents.max_age_days:")
        and "greater than or equal to 1" in line
        for line in lines
    )
    assert f"{path}: nope: unknown key" in _error(_toml(tmp_path, "[nope]\nx = 1\n"))
    assert f"{path}: http.prot: unknown key" in _error(_toml(tmp_path, "[http]\nprot = 1\n"))
    assert f"{path}: validation.residents.max_age: unknown key" in _error(
        _toml(tmp_path, "[validation.residents]\nmax_age = 1\n")
    )


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    message = _error(_toml(tmp_path, "[http]\nport = \n"))
    assert "gateway.toml" in message and "not valid TOML" in message and "line 2" in message
    message = _error(tmp_path / "absent.toml")
    assert "absent.toml" in message and "not found" in message


def test_unknown_env_section_is_refused() -> None:
    message = _error(GATEWAY_NOPE_X="1")
    assert message.startswith("GATEWAY_NOPE_X:")
    assert "no such configuration section" in message and "calendar" in message


def test_env_into_a_section_that_is_not_a_table(tmp_path: Path) -> None:
    message = _error(_toml(tmp_path, 'http = "x"\n'), GATEWAY_HTTP_PORT="1")
    assert "GATEWAY_HTTP_PORT" in message and "http" in message


@pytest.mark.parametrize(("start", "cutoff"), [(26, 26), (27, 26), (20, 10)])
def test_window_start_must_be_before_the_cutoff(start: int, cutoff: int) -> None:
    message = _error(GATEWAY_CALENDAR_WINDOW_START_DAY=str(start), GATEWAY_CALENDAR_CUTOFF_DAY=str(cutoff))
    assert "window_start_day" in message and "cutoff_day" in message
    assert message.count("\n") == 0  # one problem, one line
    config = load_config(None, {"GATEWAY_CALENDAR_WINDOW_START_DAY": "1", "GATEWAY_CALENDAR_CUTOFF_DAY": "2"})
    assert (config.calendar.window_start_day, config.calendar.cutoff_day) == (1, 2)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../../etc/passwd", "MSK+3"])
def test_unknown_timezone_is_refused(zone: str) -> None:
    message = _error(GATEWAY_CALENDAR_TIMEZONE=zone)
    assert "calendar.timezone:" in message
    assert "unknown time zone" in message


def test_every_documented_key_exists() -> None:
    """The README promises these names; renaming one breaks installations."""
    config = load_config(None, {})
    documented = {
        "database": ["url"],
        "http": ["host", "port"],
        "calendar": ["timezone", "window_start_day", "cutoff_day", "holidays_override"],
        "billing": ["tokens", "lease_seconds", "sla_working_days"],
        "devices": ["tokens"],
        "sms": ["kannel_key", "sendsms_url", "reply_max_chars"],
        "telegram": ["enabled", "token", "mode", "webhook_secret", "api_base"],
        "ivr": ["enabled", "host", "port"],
        "registry": ["csv"],
    }
    for section, keys in documented.items():
        for key in keys:
            assert hasattr(getattr(config, section), key), f"{section}.{key}"
