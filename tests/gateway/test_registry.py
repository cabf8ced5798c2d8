"""The registry CSV import on both databases: refused rows with line and reason, idempotent
re-imports, changes without duplicates, meter state rows that follow the zones, BOM and Cyrillic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.registry import ImportReport, import_registry, parse_rows
from gateway.store.schema import accounts, meter_state, meters, phones
from tests.conftest import REGISTRY_CSV

HEADER = "account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address"


def _write(tmp_path: Path, text: str, name: str = "registry.csv", bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


async def _import(engine: AsyncEngine, tmp_path: Path, text: str, bom: bool = False) -> ImportReport:
    return await import_registry(engine, _write(tmp_path, text, bom=bom))


async def _counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            t.name: (await conn.execute(select(func.count()).select_from(t))).scalar_one()
            for t in (accounts, meters, phones, meter_state)
        }


async def _meter(engine: AsyncEngine, serial: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    select(meters, accounts.c.number.label("account"), accounts.c.address)
                    .join(accounts, accounts.c.id == meters.c.account_id)
                    .where(meters.c.serial == serial)
                )
            )
            .mappings()
            .one()
        )
        zones = sorted(
            (
                await conn.execute(select(meter_state.c.zone).where(meter_state.c.meter_id == row["id"]))
            ).scalars()
        )
        phone_list = sorted(
            (
                await conn.execute(select(phones.c.phone).where(phones.c.account_id == row["account_id"]))
            ).scalars()
        )
    return {**row, "state_zones": zones, "phones": phone_list}


MIXED = f"""{HEADER}
2000001,A-1,Меркурий 201,T,6,+79161234567,10,ул. Мира 1
20x1,A-2,Меркурий 201,T,6,,10,ул. Мира 2
2000003,A-3,Меркурий 201,T1;T4,6,,10,ул. Мира 3
2000004,A-4,Меркурий 201,T,12,,10,ул. Мира 4
2000005,A-5,Меркурий 201,T,six,,10,ул. Мира 5
2000006,A-6,Меркурий 201,T,6,89161234567,10,ул. Мира 6
2000007,A-7,Меркурий 201,T,6,,-5,ул. Мира 7
2000008,A-8,Меркурий 201,T,6,,много,ул. Мира 8
2000009,A-1,Меркурий 201,T,6,,10,ул. Мира 9
2000010,A-10,Нева 303,T1;T2;T3,5,+79031112233;+79031112234,,ул. Мира 10
"""


async def test_import_reports_every_refused_row_with_its_line_and_reason(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    report = await _import(engine, tmp_path, MIXED)
    assert (report.added, report.changed, report.unchanged) == (2, 0, 0)
    refused = dict(report.refused)
    assert sorted(refused) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert "account" in refused[3] and "20x1" in refused[3]
    assert "zones" in refused[4] and "T1;T4" in refused[4]
    assert "digits" in refused[5] and "12" in refused[5]
    assert "digits" in refused[6] and "six" in refused[6]
    assert "phone" in refused[7] and "89161234567" in refused[7]
    assert "max_power_kw" in refused[8] and "-5" in refused[8]
    assert "max_power_kw" in refused[9] and "много" in refused[9]
    assert "A-1" in refused[10] and "line 2" in refused[10]
    summary = report.summary().splitlines()
    assert summary[0] == "added 2, changed 0, unchanged 0, refused 8"
    assert summary[1:] == [f"line {line}: {why}" for line, why in report.refused]
    # only the good rows reached the database; the first A-1 kept its account
    assert await _counts(engine) == {"accounts": 2, "meters": 2, "phones": 3, "meter_state": 4}
    a1 = await _meter(engine, "A-1")
    assert a1["account"] == "2000001" and a1["phones"] == ["+79161234567"]
    a10 = await _meter(engine, "A-10")
    assert a10["state_zones"] == ["T1", "T2", "T3"] and a10["digits"] == 5
    assert a10["max_power_kw"] is None
    assert a10["phones"] == ["+79031112233", "+79031112234"]


@pytest.mark.parametrize(
    "header",
    [
        "account,meter_serial,meter_model,zones,digits,phones,address",
        "account;meter_serial;meter_model;zones;digits;phones;max_power_kw;address",
        "",
    ],
)
async def test_a_bad_header_refuses_the_file_at_line_1(
    engine: AsyncEngine, tmp_path: Path, header: str
) -> None:
    report = await _import(engine, tmp_path, header + "\n2000001,A-1,X,T,6,,10,addr\n")
    assert report.added == report.changed == report.unchanged == 0
    [(line, why)] = report.refused
    assert line == 1
    assert "header" in why
    if header.startswith("account,"):
        assert "max_power_kw" in why
    assert await _counts(engine) == {"accounts": 0, "meters": 0, "phones": 0, "meter_state": 0}


def test_line_numbers_count_physical_lines() -> None:
    text = (
        f'{HEADER}\n\n2000001,A-1,X,T,6,,10,"ул. Мира,\n дом 1"\n2000002,A-2,X,T,3,,10,addr\n'
        "2000003,A-3,X,T,6,,10,addr,extra\n2000004,A-4\n"
    )
    rows, refused = parse_rows(text)
    assert [r.serial for r in rows] == ["A-1"]
    assert rows[0].address == "ул. Мира,\n дом 1"
    assert refused[:2] == [(5, "digits 3 is outside 4..10"), (6, "more fields than the header has")]
    assert refused[2][0] == 7 and "zones" in refused[2][1]


async def test_reimport_adds_nothing_and_changes_nothing(engine: AsyncEngine, tmp_path: Path) -> None:
    first = await _import(engine, tmp_path, REGISTRY_CSV)
    assert (first.added, first.changed, first.unchanged, first.refused) == (7, 0, 0, [])
    before = await _counts(engine)
    assert before == {"accounts": 6, "meters": 7, "phones": 5, "meter_state": 10}
    again = await _import(engine, tmp_path, REGISTRY_CSV)
    assert (again.added, again.changed, again.unchanged, again.refused) == (0, 0, 7, [])
    assert await _counts(engine) == before


async def test_changed_rows_are_updated_in_place(engine: AsyncEngine, tmp_path: Path) -> None:
    await _import(engine, tmp_path, REGISTRY_CSV)
    before = await _counts(engine)
    m2 = await _meter(engine, "M-2")
    changed = (
        REGISTRY_CSV.replace(  # zones T1;T2 -> T1;T2;T3
            "1000002,M-2,Меркурий 200,T1;T2,6,", "1000002,M-2,Меркурий 200,T1;T2;T3,6,"
        )
        .replace("1000003,M-3,Нева 303,T1;T2;T3,5,", "1000003,M-3,Нева 303,T,5,")  # 3 zones -> 1
        .replace("1000001,M-1,Меркурий 201,T,6,", "1000001,M-1,Меркурий 201,T,7,")  # digits
        .replace("+79031112233,10,ул. Ленина 1-5", "+79031112299,10,ул. Ленина 1-5")  # phone
        .replace("1000006,M-6,", "1000004,M-6,")  # M-6 moves to account 1000004
    )
    report = await _import(engine, tmp_path, changed)
    assert report.refused == []
    assert report.added == 0
    assert report.changed == 5, report.summary()
    assert report.unchanged == 2
    # the same rows, updated: account 1000006 stays (without meters), phones swapped one for one,
    # meter_state follows the zones (+1 for M-2, -2 for M-3)
    assert await _counts(engine) == {**before, "meter_state": before["meter_state"] - 1}

    new_m2 = await _meter(engine, "M-2")
    assert new_m2["id"] == m2["id"] and new_m2["zones"] == "T1;T2;T3"
    assert new_m2["state_zones"] == ["T1", "T2", "T3"]
    m3 = await _meter(engine, "M-3")
    assert m3["zones"] == "T" and m3["state_zones"] == ["T"]
    assert (await _meter(engine, "M-1"))["digits"] == 7
    assert (await _meter(engine, "M-5"))["phones"] == ["+79031112299"]
    # +79031112233 still belongs to account 1000003
    assert "+79031112233" in (await _meter(engine, "M-3"))["phones"]
    m6 = await _meter(engine, "M-6")
    assert m6["account"] == "1000004"

    # and importing the changed file again is a no-op
    again = await _import(engine, tmp_path, changed)
    assert (again.added, again.changed, again.unchanged) == (0, 0, 7)
    assert await _counts(engine) == {**before, "meter_state": before["meter_state"] - 1}


async def test_changed_address_or_active_flag_counts_as_changed(engine: AsyncEngine, tmp_path: Path) -> None:
    base = f"{HEADER},active\n2000001,A-1,X,T,6,,10,ул. Мира 1,1\n2000002,A-2,X,T,6,,10,ул. Мира 2,1\n"
    assert (await _import(engine, tmp_path, base)).added == 2
    edited = base.replace("ул. Мира 1,1", "ул. Мира 1а,1").replace("ул. Мира 2,1", "ул. Мира 2,0")
    report = await _import(engine, tmp_path, edited)
    assert (report.added, report.changed, report.unchanged) == (0, 2, 0), report.summary()
    assert (await _meter(engine, "A-1"))["address"] == "ул. Мира 1а"
    assert (await _meter(engine, "A-2"))["active"] is False
    assert await _counts(engine) == {"accounts": 2, "meters": 2, "phones": 0, "meter_state": 2}


async def test_meter_state_history_survives_a_zone_change(engine: AsyncEngine, tmp_path: Path) -> None:
    """Zones that stay keep their state row (the last value validation relies on)."""
    from sqlalchemy import update

    await _import(engine, tmp_path, REGISTRY_CSV)
    m2 = await _meter(engine, "M-2")
    async with engine.begin() as conn:
        await conn.execute(
            update(meter_state)
            .where(meter_state.c.meter_id == m2["id"], meter_state.c.zone == "T1")
            .values(last_value="123.4")
        )
    await _import(
        engine, tmp_path, REGISTRY_CSV.replace("M-2,Меркурий 200,T1;T2,", "M-2,Меркурий 200,T1;T2;T3,")
    )
    async with engine.connect() as conn:
        kept = (
            await conn.execute(
                select(meter_state.c.last_value).where(
                    meter_state.c.meter_id == m2["id"], meter_state.c.zone == "T1"
                )
            )
        ).scalar_one()
    assert kept == "123.4"


async def test_bom_crlf_quoted_cyrillic_and_cyrillic_zone_letters(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    text = (
        f"{HEADER}\r\n"
        '3000001,E-1,Меркурий 201,Т,6,+79161234567,10,"г. Москва, ул. Щорса, д. 5, кв. 12"\r\n'
        "3000002,E-2,Нева 303,Т1;Т2,6,,,Санкт-Петербург\r\n"
    )
    report = await _import(engine, tmp_path, text, bom=True)
    assert (report.added, report.refused) == (2, [])
    e1 = await _meter(engine, "E-1")
    assert e1["account"] == "3000001" and e1["address"] == "г. Москва, ул. Щорса, д. 5, кв. 12"
    assert e1["model"] == "Меркурий 201" and e1["zones"] == "T"
    e2 = await _meter(engine, "E-2")
    assert e2["address"] == "Санкт-Петербург" and e2["zones"] == "T1;T2"
    assert e2["state_zones"] == ["T1", "T2"]


async def test_bom_file_with_cyrillic_addresses_imports_cleanly(engine: AsyncEngine, tmp_path: Path) -> None:
    report = await _import(engine, tmp_path, REGISTRY_CSV, bom=True)
    assert (report.added, report.refused) == (7, [])
    m3 = await _meter(engine, "M-3")
    assert m3["address"] == "ул. Ленина 1-3" and m3["model"] == "Нева 303"
    # the BOM did not end up in the first column's name or value
    assert (await _meter(engine, "M-1"))["account"] == "1000001"


async def test_concurrent_imports_do_not_collide(db_url: str, tmp_path: Path) -> None:
    """Several gateways on one database load the registry at start-up at the same time."""
    import asyncio

    from gateway.store.database import create_engine

    path = _write(tmp_path, REGISTRY_CSV)
    engines = [create_engine(db_url) for _ in range(4)]
    try:
        reports = await asyncio.gather(*(import_registry(e, path) for e in engines))
    finally:
        for e in engines:
            await e.dispose()
    assert sum(r.added for r in reports) == 7
    assert sum(r.unchanged for r in reports) == 21
    assert all(r.refused == [] and r.changed == 0 for r in reports)
    check = create_engine(db_url)
    try:
        assert await _counts(check) == {"accounts": 6, "meters": 7, "phones": 5, "meter_state": 10}
    finally:
        await check.dispose()


async def test_an_accounts_own_time_zone_is_checked_and_kept(engine: AsyncEngine, tmp_path: Path) -> None:
    from sqlalchemy import select

    from gateway.store.schema import accounts as accounts_table

    path = tmp_path / "zones.csv"
    path.write_text(
        "account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address,timezone\n"
        "1000001,Z-1,M,T,6,,10,Екатеринбург,Asia/Yekaterinburg\n"
        "1000002,Z-2,M,T,6,,10,Москва,\n"
        "1000003,Z-3,M,T,6,,10,Нигде,Mars/Olympus\n",
        encoding="utf-8",
    )
    report = await import_registry(engine, path)
    assert report.added == 2
    assert report.refused == [(4, "timezone 'Mars/Olympus' is not an IANA time zone like Asia/Yekaterinburg")]
    async with engine.connect() as conn:
        zones = dict((await conn.execute(select(accounts_table.c.number, accounts_table.c.timezone))).all())
    assert zones == {"1000001": "Asia/Yekaterinburg", "1000002": None}


async def test_emails_are_checked_kept_in_lower_case_and_replaced_on_reimport(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    from gateway.store.schema import account_emails

    async def emails() -> set[tuple[str, str]]:
        async with engine.connect() as conn:
            found = await conn.execute(
                select(accounts.c.number, account_emails.c.email).join(
                    accounts, accounts.c.id == account_emails.c.account_id
                )
            )
            return set(found.all())

    head = f"{HEADER},emails\n"
    report = await _import(
        engine,
        tmp_path,
        head + "1000001,E-1,M,T,6,,10,a,Ivan@Mail.RU; ivan@mail.ru\n"
        "1000001,E-2,M,T,6,,10,a,почта@пример.рф\n"
        "1000002,E-3,M,T,6,,10,b,\n"
        "1000003,E-4,M,T,6,,10,c,ivan.mail.ru\n",
    )
    assert report.added == 3
    assert report.refused == [(5, "email 'ivan.mail.ru' is not an address like ivan@mail.ru")]
    assert await emails() == {("1000001", "ivan@mail.ru"), ("1000001", "почта@пример.рф")}
    report = await _import(
        engine, tmp_path, head + "1000001,E-1,M,T,6,,10,a,petr@mail.ru\n1000002,E-3,M,T,6,,10,b,\n"
    )
    assert (report.changed, report.unchanged) == (1, 1)  # the account's list changed, its meter did not
    assert await emails() == {("1000001", "petr@mail.ru")}
