"""Importing a partner's file through the intake, on both databases: every row decided with
the partner as its source and the row as its message id, the result file in the partner's own
layout, and a second import that changes nothing and says so."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.partner_files.config import FilesConfig
from adapters.partner_files.importing import Importer
from adapters.partner_files.layouts import Cell, load_layouts
from adapters.partner_files.readers import FileProblem
from adapters.partner_files.samples import write_sample
from adapters.partner_files.tables import partner_imports
from gateway.intake import Intake
from gateway.store.schema import inbound, readings
from tests.conftest import FakeClock

HEADER = ["НОМЕР_ПЛАТЕЖА", "ДАТА", "ЛС", "ФИО", "СЧЕТЧИК", "ПОКАЗАНИЕ", "ДЕНЬ", "НОЧЬ", "ПОЛУПИК"]
ROWS: list[list[Cell]] = [
    ["p-1", "16.11.2026", "1000001", "Иванов И. И.", "", "12345", "", "", ""],
    ["p-2", "17.11.2026", "1000001", "Иванов И. И.", "", "12000", "", "", ""],  # lower than p-1
    ["p-3", "17.11.2026 10:15:00", "1 000 002", "Петрова А. А.", "M-2", "", "4 521,5", "1720", ""],
    ["p-4", "17.11.2026", "9999999", "Кто-то", "", "100", "", "", ""],  # no such account
    ["p-5", "31.11.2026", "1000003", "Сидоров П. П.", "", "", "100", "200", "300"],  # no such day
    ["", "", "", "", "", "", "", "", ""],  # an empty line: no row at all
    ["p-6", "17.11.2026", "1000003", "Сидоров П. П.", "", "", "100", "200", ""],  # a zone missing
]


def _csv(path: Path) -> list[list[str]]:
    with open(path, encoding="cp1251", newline="") as handle:
        return list(csv.reader(handle, delimiter=";"))


def _importer(engine: AsyncEngine, intake: Intake, clock: FakeClock, **config: object) -> Importer:
    return Importer(engine, intake, FilesConfig(**config), intake.calendar.timezone, clock)  # type: ignore[arg-type]


async def test_rows_decided_result_file_written_and_a_second_import_changes_nothing(
    engine: AsyncEngine, intake: Intake, clock: FakeClock, tmp_path: Path
) -> None:
    layout = load_layouts()["payment-agent-csv"]
    path = write_sample(tmp_path / "reestr.csv", layout, HEADER, ROWS)
    importer = _importer(engine, intake, clock, chunk_rows=2)  # several chunks
    result = tmp_path / "reestr.result.csv"
    done: list[tuple[int, int | None]] = []
    summary = await importer.run(
        path,
        "reestr.csv",
        "sber",
        layout,
        "cli",
        "test",
        lambda _id: result,
        lambda n, t: done.append((n, t)),
    )
    assert (summary.rows, summary.accepted, summary.rejected, summary.unreadable, summary.repeated) == (
        6,
        2,
        3,
        1,
        0,
    )
    assert done[0] == (0, 7) and sum(n for n, _ in done) == 6  # the file's lines, then rows as decided
    got = _csv(result)
    assert got[0] == [*HEADER, "РЕЗУЛЬТАТ", "ПРИЧИНА", "КВИТАНЦИЯ"]
    assert [r[0] for r in got[1:]] == ["p-1", "p-2", "p-3", "p-4", "p-5", "p-6"]
    verdicts = {r[0]: (r[-3], r[-2]) for r in got[1:]}
    assert verdicts["p-1"] == ("принято", "")
    assert verdicts["p-2"] == ("не принято", "12 000 меньше прежних 12 345 от 16.11. Проверьте")
    assert verdicts["p-3"] == ("принято", "")
    assert verdicts["p-4"][0] == "не принято" and "9999999" in verdicts["p-4"][1]
    assert verdicts["p-5"] == ("не прочитано", "Дата не прочитана: «31.11.2026»")
    assert verdicts["p-6"][0] == "не принято"
    assert got[1][-1].isdigit() and got[5][-1] == ""  # receipts; none for a row not read
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                select(
                    inbound.c.channel, inbound.c.channel_message_id, inbound.c.source, inbound.c.payload
                ).order_by(inbound.c.id)
            )
        ).all()
        values = (
            await conn.execute(
                select(readings.c.zone, readings.c.value, readings.c.verdict, readings.c.taken_at).order_by(
                    readings.c.id
                )
            )
        ).all()
        row = (await conn.execute(select(partner_imports))).mappings().one()
    assert [s.channel_message_id for s in stored] == [
        "sber:p-1",
        "sber:p-2",
        "sber:p-3",
        "sber:p-4",
        "sber:p-6",
    ]
    assert {s.channel for s in stored} == {"file"} and {s.source for s in stored} == {"file:sber"}
    assert orjson.loads(stored[2].payload) == {
        "file": "reestr.csv", "line": 4, "id": "p-3", "account": "1000002", "meter": "M-2",
        "taken_at": "17.11.2026 10:15:00", "values": {"T1": "4 521,5", "T2": "1720"},
    }  # fmt: skip
    assert [(z, v, s) for z, v, s, _ in values] == [
        ("T", "12345", "accepted"), ("T", "12000", "rejected"), ("T1", "4521.5", "accepted"), ("T2", "1720", "accepted"),
        ("T1", "100", "rejected"), ("T2", "200", "rejected"),
    ]  # fmt: skip
    assert values[0].taken_at == datetime(2026, 11, 16, 9, 0, tzinfo=UTC)  # noon in Moscow
    assert values[2].taken_at == datetime(2026, 11, 17, 7, 15, tzinfo=UTC)
    assert (row["partner"], row["via"], row["rows"], row["accepted"], row["rejected"], row["unreadable"]) == (
        "sber",
        "cli",
        6,
        2,
        3,
        1,
    )
    assert (
        row["finished_at"] is not None and row["error"] is None and row["result_name"] == "reestr.result.csv"
    )

    clock.advance(hours=1)
    again = await importer.run(
        path, "reestr.csv", "sber", layout, "cli", "test", lambda _id: tmp_path / "again.csv"
    )
    assert (again.rows, again.repeated, again.unreadable, again.accepted, again.rejected) == (6, 5, 1, 0, 0)
    assert again.nothing_new and [e.import_id for e in again.earlier] == [summary.import_id]
    assert "this file was imported before (import 1 on 2026-11-17 09:00 UTC)" in again.summary()
    assert "nothing changed" in again.summary() and "Ничего не изменилось" in again.summary_ru()
    assert [r[-3] for r in _csv(tmp_path / "again.csv")[1:]] == [
        "повтор: принято", "повтор: не принято", "повтор: принято", "повтор: не принято",
        "не прочитано", "повтор: не принято",
    ]  # fmt: skip
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(inbound))).scalar_one() == 5
        assert (await conn.execute(select(func.count()).select_from(readings))).scalar_one() == 6


@pytest.mark.parametrize("layout_id", ["terminal-xlsx", "bank-dbf"])
async def test_xlsx_and_dbf_results_carry_every_cell_back(
    engine: AsyncEngine, intake: Intake, clock: FakeClock, tmp_path: Path, layout_id: str
) -> None:
    layout = load_layouts()[layout_id]
    c = layout.columns
    header = [
        c.id or "",
        c.taken_at or "",
        c.account or "",
        "ФИО" if layout.kind == "xlsx" else "FIO",
        c.meter or "",
        *c.values,
    ]
    rows: list[list[Cell]] = [
        ["A1", date(2026, 11, 17), "1000002", "Петрова", "", 4521.5, 1720, ""],
        ["A2", date(2026, 11, 17), "1000001", "Иванов", "M-1", 12345, "", ""],
    ]
    path = write_sample(tmp_path / f"f.{layout.kind}", layout, header, rows)
    importer = _importer(engine, intake, clock)
    result = tmp_path / f"f.result.{layout.kind}"
    summary = await importer.run(path, path.name, "bank", layout, "cli", "test", lambda _id: result)
    assert (summary.rows, summary.accepted) == (2, 2)
    if layout.kind == "xlsx":
        from openpyxl import load_workbook

        book = load_workbook(result, read_only=True)
        got = [list(r) for r in book.worksheets[0].iter_rows(values_only=True)]
        book.close()
    else:
        import dbf

        table = dbf.Table(str(result))
        table.open()
        got = [list(table.field_names)] + [[v.strip() if isinstance(v, str) else v for v in r] for r in table]
        table.close()
    assert got[0][-3:] == [layout.result.verdict, layout.result.reason, layout.result.receipt]
    assert got[1][2] == "1000002" and got[1][5] == 4521.5 and got[1][-3] == "принято"
    assert got[2][3] == ("Иванов") and got[2][-3] == "принято" and isinstance(got[2][-1], int)


async def test_a_file_whose_columns_are_missing_is_refused_and_recorded(
    engine: AsyncEngine, intake: Intake, clock: FakeClock, tmp_path: Path
) -> None:
    layout = load_layouts()["payment-agent-csv"]
    path = write_sample(tmp_path / "bad.csv", layout, ["ЛС", "СУММА"], [["1000001", "10"]])
    with pytest.raises(FileProblem) as caught:
        await _importer(engine, intake, clock).run(
            path, "bad.csv", "sber", layout, "cli", "t", lambda _id: tmp_path / "r.csv"
        )
    assert caught.value.message_ru.startswith("В файле нет столбцов СЧЕТЧИК, ДАТА, НОМЕР_ПЛАТЕЖА, ПОКАЗАНИЕ")
    too_long = write_sample(tmp_path / "long.csv", layout, HEADER, ROWS * 3)
    with pytest.raises(FileProblem, match="more than 10 rows"):
        await _importer(engine, intake, clock, max_rows=10).run(
            too_long, "long.csv", "sber", layout, "cli", "t", lambda _id: tmp_path / "r.csv"
        )
    assert not (tmp_path / "r.csv").exists()
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(inbound))).scalar_one() == 0
