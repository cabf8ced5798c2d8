"""The partners' door in a running gateway, on both databases: `POST /api/v1/files` with a
partner's own token (bounded, streamed, a partner sees only its own imports), the drop folder,
`/healthz` and `/metrics`."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.partner_files.config import Partner
from adapters.partner_files.layouts import Cell, load_layouts
from adapters.partner_files.samples import write_sample
from gateway.service import Gateway
from tests.conftest import FakeClock, make_config

HEADER = ["НОМЕР_ПЛАТЕЖА", "ДАТА", "ЛС", "ФИО", "СЧЕТЧИК", "ПОКАЗАНИЕ", "ДЕНЬ", "НОЧЬ", "ПОЛУПИК"]
ROWS: list[list[Cell]] = [
    ["a-1", "17.11.2026", "1000001", "Иванов И. И.", "", "12345", "", "", ""],
    ["a-2", "17.11.2026", "1000002", "Петрова А. А.", "", "", "4521,5", "1720", ""],
    ["a-3", "17.11.2026", "1000003", "Сидоров П. П.", "", "", "100", "", ""],
]
AGENT = {"id": "agent", "name": "Платёжный агент", "layout": "payment-agent-csv", "token": "agent-token-1"}
BANK = {"id": "bank", "name": "Банк", "layout": "bank-dbf", "token": "bank-token-2"}


class Door:
    def __init__(self, gateway: Gateway, http: aiohttp.ClientSession, root: Path) -> None:
        self.gateway = gateway
        self.http = http
        self.base = f"http://127.0.0.1:{gateway.port}"
        self.root = root

    async def upload(self, body: bytes, token: str | None, query: str = "") -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.post(f"{self.base}/api/v1/files{query}", data=body, headers=headers) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def door(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Door]:
    root = tmp_path / "files"
    config = make_config(
        db_url,
        tmp_path,
        files={
            "enabled": True,
            "dir": str(root),
            "partners": [Partner(**AGENT), Partner(**BANK)],
            "drop_poll_seconds": 0.05,
            "max_file_bytes": 4096,
        },
    )
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    async with aiohttp.ClientSession() as http:
        yield Door(gateway, http, root)
    await gateway.stop()


def _sample(tmp_path: Path, rows: list[list[Cell]] = ROWS) -> bytes:
    layout = load_layouts()["payment-agent-csv"]
    return write_sample(tmp_path / "reestr.csv", layout, HEADER, rows).read_bytes()


async def test_a_partner_posts_its_file_and_gets_its_result(door: Door, tmp_path: Path) -> None:
    body = _sample(tmp_path)
    status, answer = await door.upload(body, "agent-token-1", "?name=reestr-17.csv")
    assert status == 200, answer
    assert (answer["rows"], answer["accepted"], answer["rejected"], answer["nothing_new"]) == (3, 2, 1, False)
    assert answer["partner"] == "agent" and answer["file_name"] == "reestr-17.csv"
    url = str(answer["result_url"])
    async with door.http.get(door.base + url, headers={"Authorization": "Bearer agent-token-1"}) as resp:
        assert resp.status == 200
        assert 'filename="' in resp.headers["Content-Disposition"]
        result = list(csv.reader((await resp.read()).decode("cp1251").splitlines(), delimiter=";"))
    assert [r[-3] for r in result[1:]] == ["принято", "принято", "не принято"]
    # Another partner's token learns nothing of it; no token at all is refused.
    async with door.http.get(door.base + url, headers={"Authorization": "Bearer bank-token-2"}) as resp:
        assert resp.status == 404
    async with door.http.get(door.base + url) as resp:
        assert resp.status == 401
    # The same file again changes nothing and says so.
    status, again = await door.upload(body, "agent-token-1", "?name=reestr-17.csv")
    assert status == 200 and again["nothing_new"] is True and again["repeated"] == 3
    assert again["earlier_imports"] == [
        {"import_id": answer["import_id"], "started_at": "2026-11-17T09:00:00+00:00"}
    ]
    _, metrics = await _get(door, "/metrics")
    assert 'gateway_file_imports_total{outcome="imported",partner="agent",via="api"} 2.0' in str(metrics)
    assert 'gateway_file_rows_total{partner="agent",result="repeated"} 3.0' in str(metrics)
    file_lines = [
        line for line in str(metrics).splitlines() if 'channel="file"' in line and not line.startswith("#")
    ]
    # Verdicts by channel: the second import's rows are counted again, as repeats.
    assert 'gateway_verdicts_total{channel="file",status="accepted"} 4.0' in file_lines, file_lines
    assert 'gateway_duplicates_total{channel="file"} 3.0' in file_lines, file_lines


async def test_what_the_api_refuses(door: Door, tmp_path: Path) -> None:
    body = _sample(tmp_path)
    assert (await door.upload(body, None))[0] == 401
    assert (await door.upload(body, "device-or-guess"))[0] == 403
    status, answer = await door.upload(body, "agent-token-1", "?format=no-such")
    assert status == 422 and answer["error"]["code"] == "unknown_format"
    status, answer = await door.upload(b"x" * 5000, "agent-token-1")
    assert status == 413 and answer["error"]["code"] == "file_too_large"
    status, answer = await door.upload(body, "bank-token-2")  # a CSV where the bank's DBF is due
    assert status == 422 and answer["error"]["code"] == "bad_file"
    assert answer["error"]["message"].startswith("not a DBF file: ")
    status, answer = await door.upload(b"", "agent-token-1")
    assert status == 422 and "empty" in answer["error"]["message"]
    status, answer = await door.upload(body, "agent-token-1", "?name=a%01b")
    assert status == 400 and answer["error"]["code"] == "bad_file_name"
    _, health = await _get(door, "/healthz")
    files = health["checks"]["files"]  # type: ignore[index]
    assert files["status"] == "ok" and files["refused_files"] == 1 and files["partners"] == ["agent", "bank"]
    assert list((door.root / "incoming").iterdir()) == []  # nothing of a refused upload is kept


async def test_a_file_dropped_into_the_folder_is_imported_and_answered_beside_it(
    door: Door, tmp_path: Path
) -> None:
    drop = door.root / "drop" / "agent"
    body = _sample(tmp_path)
    (drop / "in" / ".reestr.csv.part").write_bytes(body)  # still being copied: left alone
    (drop / "in" / ".reestr.csv.part").rename(drop / "in" / "reestr.csv")
    (drop / "in" / "garbage.csv").write_bytes(b"\xff\xfe not a registry")
    out = drop / "out"
    for _ in range(200):
        if len(list(out.glob("[!.]*"))) == 2 and len(list((drop / "done").iterdir())) == 2:
            break
        await asyncio.sleep(0.05)
    names = sorted(p.name for p in out.glob("[!.]*"))
    assert names == ["1-reestr.result.csv", "garbage.csv.error.txt"] or names == [
        "2-reestr.result.csv",
        "garbage.csv.error.txt",
    ]
    result = next(out.glob("*-reestr.result.csv")).read_text(encoding="cp1251")
    assert result.count("принято") == 3 and "не принято" in result
    error = (out / "garbage.csv.error.txt").read_text(encoding="utf-8")
    assert "файл не принят. В файле нет столбцов" in error
    assert sorted(p.name.split("-", 1)[1] for p in (drop / "done").iterdir()) == ["garbage.csv", "reestr.csv"]
    assert list((drop / "in").iterdir()) == [] and list((drop / "processing").iterdir()) == []


async def _get(door: Door, path: str) -> tuple[int, object]:
    async with door.http.get(door.base + path) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()
