"""`meter-gateway init` (gateway/starter.py) and `meter-gateway config check` (gateway/cli.py): the
starter file names every key of every declared section with its meaning, its secrets are fresh,
it passes the check; the check names each wrong key and fails."""

from __future__ import annotations

import os
import stat
import tomllib
from datetime import date
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from gateway.cli import main
from gateway.config import Config, load_config
from gateway.registry import COLUMNS
from gateway.starter import init_directory, starter_toml


def _keys(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str | None, str]]:
    """(dotted key, its meaning, kind) for every key of `model`, into sub-tables and arrays of
    tables; kind is "key", "array" (of tables) or "element" (a key of an array's table)."""
    found: list[tuple[str, str | None, str]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        args = get_args(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            found += _keys(ann, f"{prefix}{name}.")
        elif len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            found.append((f"{prefix}{name}", field.description, "array"))
            found += [
                (k, m, "array" if kind == "array" else "element")
                for k, m, kind in _keys(args[0], f"{prefix}{name}.")
            ]
        else:
            found.append((f"{prefix}{name}", field.description, "key"))
    return found


def _one_line(meaning: str | None) -> str:
    return " ".join((meaning or "").split())


def test_every_key_of_every_declared_section_says_what_it_means() -> None:
    missing = [key for key, meaning, _ in _keys(Config) if not _one_line(meaning)]
    assert not missing, "keys without a docstring under them (gateway/section.py): " + ", ".join(missing)


def test_the_starter_file_shows_every_key_under_its_meaning() -> None:
    text = starter_toml("sqlite+aiosqlite:////srv/gw/gateway.db", "/etc/gw/registry.csv", date(2026, 12, 1))
    lines = text.splitlines()
    for key, meaning, kind in _keys(Config):
        if kind == "array":  # shown as a commented example table under its meaning
            assert lines[lines.index(f"# [[{key}]]") - 1] == f"# {_one_line(meaning)}", key
            continue
        section, _, name = key.rpartition(".")
        if kind == "element":  # in the example table, the meaning beside the key
            start = lines.index(f"# [[{section}]]")
            assert any(
                line.startswith(f"# {name} = ") and _one_line(meaning) in line for line in lines[start:]
            ), key
            continue
        header = lines.index(f"[{section}]")
        rest = lines[header + 1 :]
        end = next((i for i, line in enumerate(rest) if line.startswith("[")), len(rest))
        body = rest[:end]
        at = next(i for i, line in enumerate(body) if line.lstrip("# ").startswith(f"{name} ="))
        assert body[at - 1] == f"# {_one_line(meaning)}", key


def test_the_starter_file_is_the_defaults_plus_what_init_sets_and_fresh_secrets() -> None:
    first = starter_toml("sqlite+aiosqlite:////srv/gw/gateway.db", "/etc/gw/registry.csv", date(2026, 12, 1))
    second = starter_toml("sqlite+aiosqlite:////srv/gw/gateway.db", "/etc/gw/registry.csv", date(2026, 12, 1))
    data = tomllib.loads(first)
    config = Config.model_validate(data)  # valid as written
    assert config.database.url == "sqlite+aiosqlite:////srv/gw/gateway.db"
    assert config.registry.csv == "/etc/gw/registry.csv"
    secrets = [config.privacy.secret, config.ops.token, *config.billing.tokens, *config.devices.tokens]
    assert all(len(s) >= 32 for s in secrets) and len(set(secrets)) == len(secrets)
    assert tomllib.loads(second)["privacy"]["secret"] != data["privacy"]["secret"]  # generated, not fixed
    # Everything else is commented out: left as it is, it means the defaults.
    defaults = Config()
    for section in ("calendar", "validation", "senders", "held", "http"):
        assert getattr(config, section) == getattr(defaults, section)


def test_init_writes_a_private_config_and_an_empty_registry_and_refuses_to_overwrite(tmp_path: Path) -> None:
    conf, registry = init_directory(tmp_path / "etc", tmp_path / "state", date(2026, 12, 1))
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o600  # it holds secrets
    assert registry.read_text(encoding="utf-8") == ",".join(COLUMNS) + "\n"
    assert (
        load_config(conf, {}).database.url
        == f"sqlite+aiosqlite:///{(tmp_path / 'state').resolve()}/gateway.db"
    )
    with pytest.raises(FileExistsError):
        init_directory(tmp_path / "etc", tmp_path / "state", date(2026, 12, 1))


def test_init_then_config_check_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "gw")]) == 0
    told = capsys.readouterr().out
    assert "config check" in told and "db upgrade" in told and "registry.csv" in told
    assert main(["--config", str(tmp_path / "gw" / "gateway.toml"), "config", "check"]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["init", str(tmp_path / "gw")]) == 1  # never over an operator's file
    assert "exists" in capsys.readouterr().err


def test_config_check_names_each_wrong_key_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "gateway.toml"
    bad.write_text(
        "[calendar]\ncutoff_day = 40\ntimezne = 'Europe/Moscow'\n"
        "[http]\nport = 'eighty'\n"
        "[[modbus.buses]]\nname = 'a'\ntransport = 'rtu'\ndevice = '/dev/ttyUSB0'\nmeters = [{unit = 1}, {unit = 300}]\n",
        encoding="utf-8",
    )
    assert main(["config", "check", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: calendar.cutoff_day: Input should be less than or equal to 28" in err
    assert f"{bad}: calendar.timezne: unknown key" in err
    assert f"{bad}: http.port: Input should be a valid integer" in err
    assert f"{bad}: modbus.buses[0].meters[1].unit: Input should be less than or equal to 255" in err


def test_config_check_runs_the_doors_start_up_checks_without_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "gateway.toml"
    conf.write_text(
        f"[database]\nurl = 'sqlite+aiosqlite:///{tmp_path}/never.db'\n"
        "[registry]\ncsv = 'missing.csv'\n"
        "[[modbus.buses]]\nname = 'a'\ntransport = 'tcp'\nhost = '127.0.0.1'\nmeters = [{unit = 1, profile = 'nope'}]\n",
        encoding="utf-8",
    )
    assert main(["config", "check", "--config", str(conf)]) == 2
    assert "registry.csv: missing.csv: no such file" in capsys.readouterr().err
    (tmp_path / "missing.csv").write_text(",".join(COLUMNS) + "\n", encoding="utf-8")
    conf.write_text(conf.read_text(encoding="utf-8").replace("missing.csv", str(tmp_path / "missing.csv")))
    assert main(["config", "check", "--config", str(conf)]) == 2
    assert "modbus.buses[0].meters[0].profile: unknown profile 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "never.db").exists()  # nothing started, nothing created
