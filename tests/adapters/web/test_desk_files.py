"""Partners' files uploaded on the operators' desk, over real HTTP on both databases: the CSRF
token as the form's first field, the file streamed within its limit, the summary and the result
file to download, the imports of every way in listed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters.partner_files.config import Partner
from adapters.partner_files.layouts import Cell, load_layouts
from adapters.partner_files.samples import write_sample
from tests.adapters.web.test_cabinet import OPERATOR, OPERATOR_PASSWORD, Client, Web, start_web
from tests.conftest import FakeClock

HEADER = ["request_id", "reading_date", "account", "meter_serial", "value_1", "value_2", "value_3"]
ROWS: list[list[Cell]] = [
    ["q-1", "2026-11-17", "1000001", "", "12345", "", ""],
    ["q-2", "2026-11-17", "1000002", "", "1", "", ""],
]


@pytest.fixture
async def web(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Web]:
    partner = Partner(id="portal", name="Портал госуслуг", layout="portal-csv")
    w = await start_web(
        db_url, tmp_path, clock, files={"dir": str(tmp_path / "files"), "partners": [partner], "max_file_bytes": 2048},
        operators={"users": [OPERATOR]},
    )  # fmt: skip
    yield w
    await w.close()


async def _upload(
    c: Client, body: bytes, token: str | None, partner: str = "portal", token_first: bool = True
) -> tuple[int, str]:
    form = aiohttp.FormData()
    if token is not None and token_first:
        form.add_field("_csrf", token)
    form.add_field("partner", partner)
    form.add_field("format", "")
    if token is not None and not token_first:
        form.add_field("_csrf", token)
    form.add_field("file", body, filename="portal-17.csv", content_type="text/csv")
    async with c.http.post(c.base + "/operator/files", data=form) as resp:
        return resp.status, await resp.text()


async def test_an_employee_uploads_a_partners_file_and_downloads_its_result(web: Web, tmp_path: Path) -> None:
    c = web.client("10.6.0.1")
    assert (await c.operator_sign_in("ivanova", OPERATOR_PASSWORD)).url.endswith("/operator/")
    page = await c.get("/operator/files")
    assert (
        page.status == 200
        and "Портал госуслуг (portal)" in page.text
        and "Загрузок ещё не было." in page.text
    )
    body = write_sample(tmp_path / "p.csv", load_layouts()["portal-csv"], HEADER, ROWS).read_bytes()
    status, text = await _upload(c, body, page.token())
    assert status == 200, text[:300]
    assert (
        "Файл portal-17.csv (portal, формат portal-csv): строк 2; принято 1, на проверке 0, не принято 1"
        in text
    )
    link = re.search(r'href="(/operator/files/(\d+)/result)"', text)
    assert link is not None
    async with c.http.get(c.base + link.group(1)) as resp:
        assert resp.status == 200
        result = (await resp.read()).decode("utf-8").splitlines()
    assert (
        result[0]
        == "request_id,reading_date,account,meter_serial,value_1,value_2,value_3,result,reason,receipt"
    )
    assert result[1].startswith("q-1,2026-11-17,1000001,,12345,,,принято,,")
    assert ",не принято," in result[2]
    listed = await c.get("/operator/files")
    assert (
        f"<td>{link.group(2)}</td>" in listed.text
        and "portal, portal-17.csv" in listed.text
        and "desk" in listed.text
    )


async def test_what_the_upload_refuses(web: Web, tmp_path: Path) -> None:
    c = web.client("10.6.0.2")
    await c.operator_sign_in("ivanova", OPERATOR_PASSWORD)
    token = (await c.get("/operator/files")).token()
    body = write_sample(tmp_path / "p.csv", load_layouts()["portal-csv"], HEADER, ROWS).read_bytes()
    assert (await _upload(c, body, None))[0] == 403  # no token
    assert (await _upload(c, body, token, token_first=False))[0] == 403  # the token after the file's fields
    multipart_elsewhere = aiohttp.FormData()
    multipart_elsewhere.add_field("_csrf", token)
    multipart_elsewhere.add_field("q", "x", filename="x.txt")
    async with c.http.post(c.base + "/operator/paper", data=multipart_elsewhere) as resp:
        assert resp.status == 403  # a form with a file where none is taken
    status, text = await _upload(c, b"x" * 3000, token)
    assert status == 413 and "Файл больше" in text
    status, text = await _upload(c, b"a,b\n1,2\n", token)
    assert status == 422 and "Файл не принят: В файле нет столбцов" in text
    status, text = await _upload(c, body, token, partner="nobody")
    assert status == 422 and "Выберите партнёра." in text
    assert list((tmp_path / "files" / "incoming").iterdir()) == []  # nothing of a refused upload is kept
    stranger = web.client("10.6.0.3")
    assert (await stranger.get("/operator/files")).url.endswith("/operator/login")
