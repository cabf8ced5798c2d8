"""Partners' layouts: the shipped ones check, a wrong vector or declaration is named, and the
readers refuse what is not the layout's kind or encoding."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapters.partner_files.checking import check_layouts
from adapters.partner_files.layouts import LayoutError, load_layouts, parse_layout, shipped
from adapters.partner_files.readers import FileProblem, open_table
from adapters.partner_files.samples import write_sample

MSK = ZoneInfo("Europe/Moscow")


def test_shipped_layouts_check() -> None:
    good, errors = check_layouts(None, MSK)
    assert errors == []
    assert sorted(layout.id for layout in good) == [
        "bank-dbf",
        "inspector-handheld-csv",
        "payment-agent-csv",
        "portal-csv",
        "terminal-xlsx",
    ]
    assert {layout.kind for layout in good} == {"csv", "xlsx", "dbf"}


def test_a_vector_the_layout_does_not_read_as_declared_is_named(tmp_path: Path) -> None:
    text = shipped().joinpath("portal-csv.toml").read_text(encoding="utf-8")
    # An operator's copy (the same id replaces the shipped one) whose second row expects other values.
    (tmp_path / "portal.toml").write_text(
        text.replace('positional = ["100", "200", "300"]', 'positional = ["100", "200"]')
    )
    good, errors = check_layouts(str(tmp_path), MSK)
    assert "portal-csv" not in {layout.id for layout in good}
    assert len(errors) == 1
    assert errors[0].startswith(
        f"{tmp_path / 'portal.toml'}: vectors[0].rows[1]: read as account 1000003, id a7f3-0002, values 100 200 300"
    )
    assert errors[0].endswith(
        "declared account 1000003, id a7f3-0002, values 100 200, taken 2026-11-17T05:30:00+00:00"
    )


def test_a_declaration_that_cannot_be_used_names_the_key() -> None:
    with pytest.raises(LayoutError, match=r"x.toml: columns: Value error, name either `values`"):
        parse_layout(
            "x.toml",
            'id = "x"\nname = "X"\nkind = "csv"\n[columns]\naccount = "ЛС"\n[[vectors]]\nheader=["ЛС"]\nrows=[["1"]]\n[[vectors.expect]]\naccount="1"\n',
        )
    with pytest.raises(LayoutError, match="a DBF field name is 1-10 Latin capitals"):
        text = shipped().joinpath("bank-dbf.toml").read_text(encoding="utf-8")
        parse_layout("bank.toml", text.replace('verdict = "RESULT"', 'verdict = "РЕЗУЛЬТАТ"'))


def test_two_declarations_of_one_id_in_one_folder_are_refused(tmp_path: Path) -> None:
    text = shipped().joinpath("portal-csv.toml").read_text(encoding="utf-8")
    (tmp_path / "a.toml").write_text(text)
    (tmp_path / "b.toml").write_text(text)
    with pytest.raises(LayoutError, match="id 'portal-csv' is also declared in"):
        load_layouts(str(tmp_path))


def test_a_file_not_in_the_layouts_encoding_or_kind_is_refused_whole(tmp_path: Path) -> None:
    layouts = load_layouts()
    agent = layouts["payment-agent-csv"]
    path = write_sample(tmp_path / "agent.csv", agent, agent.vectors[0].header, agent.vectors[0].rows)
    portal = layouts["portal-csv"]  # UTF-8: the Windows-1251 bytes of the header are not
    with pytest.raises(FileProblem) as caught:
        open_table(path, portal)
    assert caught.value.message_ru.startswith("Файл не в кодировке utf-8")
    with pytest.raises(FileProblem, match="not an XLSX workbook"):
        open_table(path, layouts["terminal-xlsx"])
    with pytest.raises(FileProblem, match="not a DBF file"):
        open_table(path, layouts["bank-dbf"])


def test_a_dbf_that_names_no_code_page_is_read_in_the_layouts_encoding(tmp_path: Path) -> None:
    bank = load_layouts()["bank-dbf"]
    path = write_sample(tmp_path / "bank.dbf", bank, ["LS", "FIO"], [["1000001", "Иванов"]])
    data = bytearray(path.read_bytes())
    data[29] = 0  # no language driver byte: the file says nothing of its code page
    path.write_bytes(bytes(data))
    table = open_table(path, bank)
    try:
        assert [cells for _, cells in table.rows] == [["1000001", "Иванов"]]
    finally:
        table.close()


@pytest.mark.parametrize("layout_id", ["terminal-xlsx", "bank-dbf"])
def test_a_damaged_file_is_refused_whole_not_a_fault(tmp_path: Path, layout_id: str) -> None:
    """What the parsers raise on a damaged file (zlib, openpyxl, the dbf package) is one refusal."""
    layout = load_layouts()[layout_id]
    vector = layout.vectors[0]
    path = write_sample(tmp_path / f"f.{layout.kind}", layout, vector.header, vector.rows * 200)
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 400, 7):  # garbage in the middle of the rows
        data[i] = 0xFF if layout.kind == "dbf" else data[i] ^ 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(FileProblem) as caught:
        table = open_table(path, layout)
        try:
            for _ in table.rows:
                pass
        finally:
            table.close()
    assert caught.value.message_ru.startswith(("Файл повреждён", "Файл не читается"))
