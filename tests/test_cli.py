"""The `meter-gateway` command as an operator runs it: a real subprocess, a real database file."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import inspect, text

from gateway.store.database import create_engine
from tests.conftest import PG_ADMIN_URL, REGISTRY_CSV, Running, stored

ROOT = Path(__file__).resolve().parent.parent
EXE = str(ROOT / ".venv" / "bin" / "meter-gateway")
FIELDS = [
    "reading_id", "account", "meter_serial", "zone", "value", "raw_value", "ratio", "taken_at",
    "received_at", "channel", "source", "employee", "period", "verdict", "reasons", "due_at",
    "committed_at", "control",
]  # fmt: skip
TABLES = {"accounts", "meters", "phones", "meter_state", "inbound", "readings", "batches", "audit"}


def _env(db_url: str | None = None, **extra: str) -> dict[str, str]:
    """The test process's environment without any GATEWAY_* setting of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    if db_url is not None:
        env["GATEWAY_DATABASE_URL"] = db_url
    env.update(extra)
    return env


def run(cwd: Path, *args: str, db_url: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    # bytes decoded by hand: text mode would turn the CSV's \r\n into \n
    done = subprocess.run([EXE, *args], cwd=cwd, env=_env(db_url, **extra), capture_output=True, timeout=60)
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    )


def _sqlite(tmp_path: Path, name: str = "cli.db") -> tuple[str, Path]:
    path = tmp_path / name
    return f"sqlite+aiosqlite:///{path}", path


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# -- db upgrade -----------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema_on_a_new_sqlite_file(tmp_path: Path) -> None:
    url, path = _sqlite(tmp_path, "sub/dir/new.db")
    result = run(tmp_path, "db", "upgrade", db_url=url)
    assert result.returncode == 0, result.stderr
    assert "latest schema" in result.stdout
    assert TABLES <= _tables(path)
    with sqlite3.connect(path) as conn:
        [(version,)] = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert version
    # a second run is a no-op that succeeds
    again = run(tmp_path, "db", "upgrade", db_url=url)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(version,)]


async def test_db_upgrade_on_both_databases(db_url: str, tmp_path: Path) -> None:
    """On the test databases (already at the latest schema) upgrading again succeeds and keeps them."""
    result = await asyncio.to_thread(run, tmp_path, "db", "upgrade", db_url=db_url)
    assert result.returncode == 0, result.stderr
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    assert TABLES <= names


@pytest.fixture
def fresh_pg(pg_database: str) -> Iterator[str]:
    """An empty PostgreSQL database, never migrated (pg_database makes sure the server is up)."""
    name = f"mg_cli_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        engine = create_engine(PG_ADMIN_URL)
        try:
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_db_upgrade_creates_the_schema_on_an_empty_postgresql_database(fresh_pg: str, tmp_path: Path) -> None:
    result = run(tmp_path, "db", "upgrade", db_url=fresh_pg)
    assert result.returncode == 0, result.stderr
    assert "latest schema" in result.stdout

    async def names() -> set[str]:
        engine = create_engine(fresh_pg)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        finally:
            await engine.dispose()

    assert TABLES <= asyncio.run(names())


def test_db_upgrade_of_an_unreachable_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    result = run(tmp_path, "db", "upgrade", db_url="postgresql+asyncpg://nobody:secret@127.0.0.1:1/none")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "error: database" in result.stderr
    assert "secret" not in result.stderr  # the password is not printed


# -- import registry --------------------------------------------------------------------------


def test_import_registry_prints_the_summary_and_exit_0(tmp_path: Path) -> None:
    url, path = _sqlite(tmp_path)
    csv_file = tmp_path / "registry.csv"
    csv_file.write_text(REGISTRY_CSV, encoding="utf-8")
    result = run(tmp_path, "import", "registry", str(csv_file), db_url=url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "added 7, changed 0, unchanged 0, refused 0"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM meters").fetchone() == (7,)
    again = run(tmp_path, "import", "registry", str(csv_file), db_url=url)
    assert again.returncode == 0
    assert again.stdout.strip() == "added 0, changed 0, unchanged 7, refused 0"


def test_import_registry_with_refused_rows_exits_1_and_names_each_line(tmp_path: Path) -> None:
    url, path = _sqlite(tmp_path)
    csv_file = tmp_path / "registry.csv"
    csv_file.write_text(
        REGISTRY_CSV + "12,M-7,X,T,6,,10,addr\n1000008,M-8,X,T1;T9,6,,10,addr\n1000009,M-9,X,T,6,,10,addr\n",
        encoding="utf-8",
    )
    result = run(tmp_path, "import", "registry", str(csv_file), db_url=url)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "added 8, changed 0, unchanged 0, refused 2"
    assert lines[1].startswith("line 9: ") and "'12'" in lines[1]
    assert lines[2].startswith("line 10: ") and "T1;T9" in lines[2]
    assert len(lines) == 3
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM meters").fetchone() == (8,)


def test_import_registry_refused_header_exits_1(tmp_path: Path) -> None:
    url, _ = _sqlite(tmp_path)
    csv_file = tmp_path / "registry.csv"
    csv_file.write_text("account,meter_serial\n1,2\n", encoding="utf-8")
    result = run(tmp_path, "import", "registry", str(csv_file), db_url=url)
    assert result.returncode == 1
    assert "refused 1" in result.stdout and "line 1: header lacks" in result.stdout


def test_import_registry_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    url, path = _sqlite(tmp_path)
    result = run(tmp_path, "import", "registry", str(tmp_path / "nope.csv"), db_url=url)
    assert result.returncode == 2
    assert "nope.csv" in result.stderr and "no such file" in result.stderr
    assert "Traceback" not in result.stderr
    assert not path.exists()


def test_import_registry_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    url, _ = _sqlite(tmp_path)
    csv_file = tmp_path / "registry-1251.csv"
    csv_file.write_bytes(REGISTRY_CSV.encode("cp1251"))
    result = run(tmp_path, "import", "registry", str(csv_file), db_url=url)
    assert result.returncode == 2
    assert "UTF-8" in result.stderr and "registry-1251.csv" in result.stderr
    assert "Traceback" not in result.stderr


# -- export -----------------------------------------------------------------------------------

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def _push_export_data(running: Running) -> dict[str, int]:
    """Two accepted device messages (three readings) and one rejected; returns reading ids by tag."""
    res = await running.push(
        {"id": "e-1", "meter": "M-1", "value": "12345.67"},
        {"id": "e-2", "meter": "M-2", "values": {"T1": "100.10", "T2": "0042,5"}},
        {"id": "e-3", "meter": "M-5", "value": "1234567"},
    )
    assert [r["status"] for r in res] == ["accepted", "accepted", "rejected"], res
    return {
        "M-1": stored(res[0]["readings"][0]),
        "M-2/T1": stored(res[1]["readings"][0]),
        "M-2/T2": stored(res[1]["readings"][1]),
        "M-5": stored(res[2]["readings"][0]),
    }


async def _export(running: Running, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    url = running.gateway.config.database.url
    return await asyncio.to_thread(run, tmp_path, "export", *args, db_url=url)


@SQLITE_ONLY
async def test_export_csv_is_excel_ready_and_exact(running: Running, tmp_path: Path) -> None:
    ids = await _push_export_data(running)
    out = tmp_path / "out.csv"
    result = await _export(running, tmp_path, "--since", "2026-01-01", "--format", "csv", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "exported 3 readings" in result.stderr
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.count(b"\xef\xbb\xbf") == 1
    assert not (tmp_path / "out.csv.part").exists()
    lines = raw[3:].decode("utf-8").split("\r\n")
    assert lines[0] == ";".join(FIELDS)
    rows = list(csv.DictReader(io.StringIO(raw[3:].decode("utf-8")), delimiter=";"))
    assert [int(r["reading_id"]) for r in rows] == [ids["M-1"], ids["M-2/T1"], ids["M-2/T2"]]
    assert [(r["meter_serial"], r["zone"], r["value"]) for r in rows] == [
        ("M-1", "T", "12345.67"),
        ("M-2", "T1", "100.10"),
        ("M-2", "T2", "42.5"),
    ]
    first = rows[0]
    assert first["account"] == "1000001"
    assert first["verdict"] == "accepted" and first["reasons"] == ""
    assert first["channel"] == "device" and first["source"] == "device:token-1"
    assert first["employee"] == "" and first["committed_at"] == ""
    assert first["period"] == "2026-11"
    assert datetime.fromisoformat(first["received_at"]) == running.clock.now
    assert datetime.fromisoformat(first["due_at"]) == datetime(2026, 11, 18, 21, 0, tzinfo=UTC)


@SQLITE_ONLY
async def test_export_all_includes_rejected_and_json_is_an_array(running: Running, tmp_path: Path) -> None:
    ids = await _push_export_data(running)
    out = tmp_path / "all.json"
    result = await _export(
        running, tmp_path, "--since", "2026-01-01", "--format", "json", "--all", "-o", str(out)
    )
    assert result.returncode == 0, result.stderr
    data = orjson.loads(out.read_bytes())
    assert isinstance(data, list)
    assert [r["reading_id"] for r in data] == sorted(ids.values())
    assert all(list(r) == FIELDS for r in data)
    by_id = {r["reading_id"]: r for r in data}
    rejected = by_id[ids["M-5"]]
    assert rejected["verdict"] == "rejected" and rejected["reasons"] == ["too_many_digits"]
    assert rejected["value"] == "1234567"
    assert by_id[ids["M-1"]]["value"] == "12345.67"

    # without --all only the accepted ones; to standard output
    result = await _export(running, tmp_path, "--since", "2026-01-01", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = orjson.loads(result.stdout)
    assert [r["reading_id"] for r in data] == [ids["M-1"], ids["M-2/T1"], ids["M-2/T2"]]

    # CSV to standard output carries the BOM too, and --all shows the reason codes
    result = await _export(running, tmp_path, "--since", "2026-01-01", "--all")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("\ufeff" + ";".join(FIELDS) + "\r\n")
    rows = list(csv.DictReader(io.StringIO(result.stdout.lstrip("\ufeff")), delimiter=";"))
    assert [r["verdict"] for r in rows] == ["accepted", "accepted", "accepted", "rejected"]
    assert rows[3]["reasons"] == "too_many_digits"


@SQLITE_ONLY
async def test_export_range_uses_the_retailers_dates(running: Running, tmp_path: Path) -> None:
    """`--since 2026-11-17` starts at midnight Moscow time (21:00 UTC the day before)."""
    clock = running.clock
    clock.now = datetime(2026, 11, 16, 20, 30, tzinfo=UTC)  # 23:30 on 16 Nov in Moscow
    before = (await running.push({"id": "r-1", "meter": "M-1", "value": "100"}))[0]
    clock.now = datetime(2026, 11, 16, 21, 30, tzinfo=UTC)  # 00:30 on 17 Nov in Moscow
    after = (await running.push({"id": "r-2", "meter": "M-1", "value": "101"}))[0]
    first, second = before["readings"][0]["reading_id"], after["readings"][0]["reading_id"]

    async def exported(*args: str) -> list[int]:
        result = await _export(running, tmp_path, "--format", "json", *args)
        assert result.returncode == 0, result.stderr
        return [r["reading_id"] for r in orjson.loads(result.stdout)]

    assert await exported("--since", "2026-11-17") == [second]
    assert await exported("--since", "2026-11-16", "--until", "2026-11-17") == [first]
    assert await exported("--since", "2026-11-16T20:00Z", "--until", "2026-11-16T21:00+00:00") == [first]


def test_export_bad_date_is_a_usage_error(tmp_path: Path) -> None:
    url, _ = _sqlite(tmp_path)
    result = run(tmp_path, "export", "--since", "1 ноября", db_url=url)
    assert result.returncode == 2
    assert "is not a date" in result.stderr


def test_export_from_a_database_without_schema_fails_cleanly(tmp_path: Path) -> None:
    url, _ = _sqlite(tmp_path, "empty.db")
    out = tmp_path / "x.csv"
    result = run(tmp_path, "export", "--since", "2026-01-01", "-o", str(out), db_url=url)
    assert result.returncode == 1
    assert "error: database" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "x.csv.part").exists()


# -- configuration errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        (None, {"GATEWAY_CALENDAR_CUTOFF_DAY": "40"}, ["calendar.cutoff_day", "28"]),
        ("[http]\nprot = 8080\n", {}, ["gateway.toml", "http.prot", "unknown key"]),
        ("[calendar]\ncutoff_day = = 3\n", {}, ["gateway.toml", "not valid TOML", "line 2"]),
        (None, {"GATEWAY_NOPE_X": "1"}, ["GATEWAY_NOPE_X", "no such configuration section"]),
        (None, {"GATEWAY_HTTP_PORT": "80800"}, ["http.port"]),
        (None, {"GATEWAY_VALIDATION_RESIDENTS_MAX_AGE_DAYS": "0"}, ["validation.residents.max_age_days"]),
    ],
)
def test_bad_configuration_exits_2_naming_the_key(
    tmp_path: Path, toml: str | None, env: dict[str, str], expected: list[str]
) -> None:
    url, path = _sqlite(tmp_path)
    if toml is not None:
        (tmp_path / "gateway.toml").write_text(toml, encoding="utf-8")
    result = run(tmp_path, "db", "upgrade", db_url=url, **env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "configuration error" in result.stderr
    for part in expected:
        assert part in result.stderr
    assert "Traceback" not in result.stderr
    assert not path.exists()  # nothing was touched


def test_explicit_config_file_is_read_and_checked(tmp_path: Path) -> None:
    url, path = _sqlite(tmp_path, "from-toml.db")
    conf = tmp_path / "conf" / "site.toml"
    conf.parent.mkdir()
    conf.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    result = run(tmp_path, "--config", str(conf), "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert TABLES <= _tables(path)
    missing = run(tmp_path, "--config", str(tmp_path / "absent.toml"), "db", "upgrade")
    assert missing.returncode == 2 and "absent.toml" in missing.stderr and "not found" in missing.stderr


def test_config_before_the_run_command_is_not_lost() -> None:
    from gateway.cli import build_parser

    assert build_parser().parse_args(["--config", "site.toml", "run"]).config == "site.toml"
    assert build_parser().parse_args(["run", "--config", "site.toml"]).config == "site.toml"


# -- firmware profiles ------------------------------------------------------------------------


def test_profiles_check_command(tmp_path: Path) -> None:
    result = run(tmp_path, "profiles", "check")
    assert "invalid choice" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(" profiles, 0 errors")
    assert result.stdout.strip()  # each model's register map
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = run(tmp_path, "profiles", "check", str(empty))
    assert bad.returncode == 1
    assert "error:" in bad.stderr and "0 profiles" in bad.stderr
