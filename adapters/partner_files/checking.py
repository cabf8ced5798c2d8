"""`meter-gateway layouts check [DIR]`: every partners' layout read and its test vectors run.

Each vector is written as a real file of the layout's kind (adapters/partner_files/samples.py),
read back through the same reader and row mapping an import uses, and each row compared with
what the vector says it must become, so a layout that checks here reads partners' files the
same way.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from adapters.partner_files.layouts import Expected, Layout, LayoutError, load_layouts
from adapters.partner_files.readers import FileProblem, open_table
from adapters.partner_files.rows import ColumnIndex, RowProblem, RowReading, read_row
from adapters.partner_files.samples import write_sample

# Far after every vector's date: a bare date then stays noon of its day (see rows.moment_of).
_NOW = datetime(2100, 1, 1, tzinfo=UTC)


def _expected_moment(value: date | datetime | None, tz: ZoneInfo) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(UTC)
    return datetime.combine(value, time(12), tzinfo=tz).astimezone(UTC)


def _describe(got: RowReading | RowProblem | None) -> str:
    if got is None:
        return "an empty row"
    if isinstance(got, RowProblem):
        return f"refused ({got.code}: {got.message_en})"
    parts = [f"account {got.account}" if got.account else "no account"]
    parts += [f"meter {got.meter}"] if got.meter else []
    parts += [f"id {got.row_id}"] if got.row_id else []
    parts.append(
        "values " + (", ".join(f"{z} {v}" for z, v in got.values.items()) or " ".join(got.positional))
    )
    parts.append(f"taken {got.taken_at.isoformat()}" if got.taken_at else "taken at import")
    return ", ".join(parts)


def _matches(want: Expected, got: RowReading | RowProblem | None, tz: ZoneInfo) -> bool:
    if want.refused:
        return isinstance(got, RowProblem) and got.code == want.refused
    if not isinstance(got, RowReading):
        return False
    return (
        got.account == want.account
        and got.meter == want.meter
        and got.row_id == want.id
        and got.values == want.values
        and list(got.positional) == want.positional
        and got.taken_at == _expected_moment(want.taken_at, tz)
    )


def run_vectors(layout: Layout, tz: ZoneInfo) -> list[str]:
    """One error per vector row the layout does not read as declared."""
    errors = []
    with tempfile.TemporaryDirectory(prefix="mg-layout-") as tmp:
        for i, vector in enumerate(layout.vectors):
            where = f"{layout.where}: vectors[{i}]"
            path = Path(tmp) / f"vector-{i}.{layout.kind}"
            try:
                write_sample(path, layout, vector.header, vector.rows)
                table = open_table(path, layout)
            except (FileProblem, ValueError, TypeError) as exc:
                errors.append(f"{where}: cannot be written or read as {layout.kind}: {exc}")
                continue
            try:
                index = ColumnIndex(layout, table.header)
                got = [read_row(index, cells, line, tz, _NOW) for line, cells in table.rows]
            except FileProblem as exc:
                errors.append(f"{where}: {exc.message_en}")
                continue
            finally:
                table.close()
            got = [g for g in got if g is not None]
            if len(got) != len(vector.expect):
                errors.append(f"{where}: {len(got)} rows read, {len(vector.expect)} declared")
                continue
            for j, (want, row) in enumerate(zip(vector.expect, got, strict=True)):
                if not _matches(want, row, tz):
                    errors.append(
                        f"{where}.rows[{j}]: read as {_describe(row)}; declared {_declared(want, tz)}"
                    )
    return errors


def _declared(want: Expected, tz: ZoneInfo) -> str:
    if want.refused:
        return f"refused ({want.refused})"
    moment = _expected_moment(want.taken_at, tz)
    return _describe(
        RowReading(0, want.account, want.meter, dict(want.values), tuple(want.positional), moment, want.id)
    )


def check_layouts(directory: str | None, tz: ZoneInfo) -> tuple[list[Layout], list[str]]:
    """(layouts whose vectors pass, errors): the shipped ones and `directory`'s."""
    try:
        known = load_layouts(directory)
    except (LayoutError, OSError) as exc:
        return [], [str(exc)]
    good, errors = [], []
    for layout in known.values():
        found = run_vectors(layout, tz)
        errors += found
        if not found:
            good.append(layout)
    return good, errors


def describe(layout: Layout, partners: list[str]) -> str:
    """What `layouts check` prints of one layout."""
    c = layout.columns
    settings: list[str] = [layout.kind]
    if layout.kind != "xlsx":
        settings.append(layout.encoding)
    if layout.kind == "csv":
        settings.append(f"delimiter {layout.delimiter!r}")
    if layout.skip_rows:
        settings.append(f"{layout.skip_rows} title rows")
    lines = [f"{layout.id}: {layout.name}", f"  {', '.join(settings)}"]
    read = [f"{what} «{name}»" for what, name in (("account", c.account), ("meter", c.meter)) if name]
    if c.zones:
        read.append("zones " + ", ".join(f"{z} «{n}»" for z, n in c.zones.items()))
    else:
        read.append("values by position " + ", ".join(f"«{n}»" for n in c.values))
    if c.taken_at:
        read.append(f"date «{c.taken_at}» ({' or '.join(layout.date_formats)})")
    read.append(f"row id «{c.id}»" if c.id else "row id: file and line")
    lines.append("  reads: " + "; ".join(read))
    r = layout.result
    lines.append(f"  result adds: «{r.verdict}», «{r.reason}», «{r.receipt}»")
    lines.append(f"  partners: {', '.join(partners) if partners else 'none configured'}")
    lines.append(f"  {len(layout.vectors)} test vectors, {sum(len(v.rows) for v in layout.vectors)} rows")
    return "\n".join(lines)
