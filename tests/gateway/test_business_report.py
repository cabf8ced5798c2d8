"""A business customer's report file (gateway/business_report.py): both shapes as Excel saves them,
rows refused with their line and reason, the file as a whole refused when it cannot be read."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.business_report import MAX_BYTES, Point, ReportError, read_report

POINTS = [
    Point("B-1", "Цех 1, ввод 1", ("T1", "T2")),
    Point("B-2", "Цех 2", ("T",)),
    Point("B-3", "Склад", ("T1", "T2", "T3")),
]


def test_one_zone_a_row_in_windows_1251_with_semicolons() -> None:
    text = (
        "Счётчик;Зона;Показание;Дата\n"
        "B-1;Т1;12345,6;20.11.2026\n"
        "b-1;ночь;4567;20.11.2026\n"  # the meter's number in any case, the zone in words
        "B-2;;812;2026-11-20\n"  # a single-rate meter needs no zone
        "B-3;T1;1;\n"
        "B-9;T;5;20.11.2026\n"
        "B-1;Т3;5;20.11.2026\n"
        "B-3;T2;2;31.11.2026\n"
        "B-1;Т1;7;20.11.2026\n"
        "B-3;;3;\n"
        "\n"
    )
    report = read_report(text.encode("cp1251"), POINTS)
    assert [(r.serial, r.day, r.values, r.lines) for r in report.readings] == [
        ("B-1", date(2026, 11, 20), {"T1": "12345,6", "T2": "4567"}, [2, 3]),
        ("B-2", date(2026, 11, 20), {"T": "812"}, [4]),
        ("B-3", None, {"T1": "1"}, [5]),
    ]
    assert report.refused == [
        (6, "В договоре нет счётчика или точки учёта «B-9»"),
        (7, "У счётчика B-1 нет зоны T3 (его зоны: T1, T2)"),
        (8, "Дата «31.11.2026» не похожа на ДД.ММ.ГГГГ"),
        (9, "Зона T1 счётчика B-1 уже указана выше"),
        (10, "Укажите зону: у счётчика B-3 зоны T1, T2, T3"),
    ]


def test_one_point_a_row_by_its_name_in_utf8_with_commas() -> None:
    text = '\ufeffТочка учёта,Т1,Т2,Т3\n"Цех 1, ввод 1",100,50,\nцех 2,812,,\nСклад,1,2,3\nКотельная,1,,\n'
    report = read_report(text.encode("utf-8"), POINTS)
    assert [(r.serial, r.values) for r in report.readings] == [
        ("B-1", {"T1": "100", "T2": "50"}),
        ("B-2", {"T": "812"}),  # a single-rate meter's value in the first zone's column
        ("B-3", {"T1": "1", "T2": "2", "T3": "3"}),
    ]
    assert report.refused == [(5, "В договоре нет счётчика или точки учёта «Котельная»")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "Файл пуст"),
        ("зона;показание\nT;1\n".encode(), "Нет столбца «счётчик» или «точка учёта»"),
        ("счётчик;дата\nB-2;\n".encode(), "Нет столбца «показание»"),
        (b"x" * (MAX_BYTES + 1), "Файл больше 1000 КБ"),
        (("счётчик;показание\n" + "B-2;1\n" * 5001).encode(), "В файле больше 5000 строк"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_whole(data: bytes, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        read_report(data, POINTS)


def _workbook(rows: list[list[object]]) -> bytes:
    from io import BytesIO

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = BytesIO()
    book.save(out)
    return out.getvalue()


def test_an_excel_workbook_reads_like_its_csv() -> None:
    """The .xlsx itself, as Excel keeps it: numbers and dates as cells, not text."""
    from datetime import datetime

    data = _workbook(
        [
            ["Точка учёта", "Т1", "Т2", "Дата"],
            ["Цех 1, ввод 1", 12345.6, 4567, datetime(2026, 11, 20)],
            ["Цех 2", None, None, "20.11.2026"],
            ["Склад", 1, 2, None],
        ]
    )
    report = read_report(data, POINTS)
    assert [(r.serial, r.day, r.values, r.lines) for r in report.readings] == [
        ("B-1", date(2026, 11, 20), {"T1": "12345.6", "T2": "4567"}, [2]),
        ("B-3", None, {"T1": "1", "T2": "2"}, [4]),
    ]
    assert [line for line, _ in report.refused] == [3]


def test_a_damaged_workbook_is_refused_whole() -> None:
    data = _workbook([["Счётчик", "Показание"], ["B-2", 5]])
    with pytest.raises(ReportError, match="Excel"):
        read_report(data[: len(data) // 2], POINTS)
