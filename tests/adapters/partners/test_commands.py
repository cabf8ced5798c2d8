"""`meter-gateway import readings` and `layouts check` as an operator runs them: a real process
on a real SQLite file (the import itself is tested on both databases in
tests/adapters/partner_files/test_importing.py)."""

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path

from adapters.partner_files.layouts import Cell, load_layouts, shipped
from adapters.partner_files.samples import write_sample
from tests.conftest import REGISTRY_CSV
from tests.test_cli import _sqlite, run

HEADER = ["НОМЕР_ПЛАТЕЖА", "ДАТА", "ЛС", "ФИО", "СЧЕТЧИК", "ПОКАЗАНИЕ", "ДЕНЬ", "НОЧЬ", "ПОЛУПИК"]


def test_import_readings_writes_the_result_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    url, _ = _sqlite(tmp_path)
    (tmp_path / "registry.csv").write_text(REGISTRY_CSV, encoding="utf-8")
    assert run(tmp_path, "import", "registry", "registry.csv", db_url=url).returncode == 0
    today = date.today().strftime("%d.%m.%Y")  # a real process: the real clock
    rows: list[list[Cell]] = [
        ["c-1", today, "1000001", "Иванов", "", "12345", "", "", ""],
        ["c-2", today, "1000002", "Петрова", "", "", "4521,5", "1720", ""],
        ["c-3", "32.13.2026", "1000003", "Сидоров", "", "", "1", "2", "3"],
    ]
    write_sample(tmp_path / "reestr.csv", load_layouts()["payment-agent-csv"], HEADER, rows)
    done = run(tmp_path, "import", "readings", "reestr.csv", "--partner", "sber", db_url=url)
    assert done.returncode == 1, done.stderr  # a row could not be read
    assert done.stdout.splitlines() == [
        "import 1: reestr.csv from sber (layout payment-agent-csv): 3 rows: 2 accepted, 0 held for review, 0 refused, 0 repeated, 1 unreadable",
        "result: reestr.result.csv",
    ]
    assert "\r" not in done.stderr  # no progress bar when standard error is not a terminal
    with open(tmp_path / "reestr.result.csv", encoding="cp1251", newline="") as handle:
        assert [r[-3:] for r in csv.reader(handle, delimiter=";")][1:] == [
            ["принято", "", "1"], ["принято", "", "2"], ["не прочитано", "Дата не прочитана: «32.13.2026»", ""],
        ]  # fmt: skip
    again = run(
        tmp_path, "import", "readings", "reestr.csv", "--partner", "sber", "--report", "again.csv", db_url=url
    )
    assert again.returncode == 1
    assert again.stdout.splitlines()[1:] == [
        again.stdout.splitlines()[1],
        "nothing changed: every row had been decided before",
        "result: again.csv",
    ]
    assert again.stdout.splitlines()[1].startswith("this file was imported before (import 1 on ")
    assert "2 repeated" in again.stdout and (tmp_path / "again.csv").is_file()


def test_import_readings_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    url, _ = _sqlite(tmp_path)
    missing = run(tmp_path, "import", "readings", "nope.csv", db_url=url)
    assert missing.returncode == 2 and "nope.csv: no such file" in missing.stderr
    (tmp_path / "odd.csv").write_text("a;b\n1;2\n", encoding="utf-8")
    odd = run(tmp_path, "import", "readings", "odd.csv", db_url=url)
    assert odd.returncode == 2
    assert "odd.csv: no layout fits the file's header; name one with --format" in odd.stderr
    named = run(tmp_path, "import", "readings", "odd.csv", "--format", "portal-csv", db_url=url)
    assert named.returncode == 2 and "columns missing for layout portal-csv" in named.stderr


def test_layouts_check(tmp_path: Path) -> None:
    done = run(tmp_path, "layouts", "check")
    assert done.returncode == 0, done.stderr
    assert "payment-agent-csv: Реестр платежей агента с показаниями" in done.stdout
    assert re.search(r"^\d+ layouts, 0 errors$", done.stderr, re.M), done.stderr
    own = tmp_path / "own"
    own.mkdir()
    text = shipped().joinpath("bank-dbf.toml").read_text(encoding="utf-8")
    (own / "bank.toml").write_text(text.replace('id = "000042"', 'id = "000043"'), encoding="utf-8")
    broken = run(tmp_path, "layouts", "check", str(own))
    assert broken.returncode == 1
    assert (
        f"error: {own / 'bank.toml'}: vectors[0].rows[1]: read as account 1000003, meter M-3, id 000042"
        in broken.stderr
    )
