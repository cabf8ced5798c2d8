"""Business customers (gateway/business.py): the registry's columns for them (INN check digits,
contracts, contacts), their import on both databases, the desk's search by contract, INN and
name, and the rule that an account number alone verifies nobody for them."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import account_views, business
from gateway.config import Config, VerificationConfig
from gateway.notify import LogCodeSender
from gateway.privacy_report import privacy_report
from gateway.registry import ImportReport, import_registry, parse_rows
from gateway.store.schema import meters
from gateway.verification import ANY, Key, Purpose, Rule, Verifier
from tests.conftest import REGISTRY_CSV

NOW = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
HEADER = REGISTRY_CSV.splitlines()[0] + ",kind,contract,name,inn,point,contacts"
CONTACTS = "Иванов Иван Иванович <Ivanov@Romashka.ru> +79160000001; Петрова Анна, 8 (916) 000-00-02"
CUSTOMER = '"Тверь, Заводская 1",legal,12-345/2024,"ООО ""Ромашка""",7707083893'
ROMASHKA = [
    f'3000001,B-1,Меркурий 230,T1;T2,6,,100,{CUSTOMER},"Цех 1, ввод 1","{CONTACTS}"',
    f'3000001,B-2,Меркурий 201,T,6,,60,{CUSTOMER},Цех 2,"{CONTACTS}"',
    f'3000001,B-3,Нева 303,T1;T2;T3,6,,100,{CUSTOMER},Склад,"{CONTACTS}"',
]
SOLE = "3000002,B-9,Меркурий 201,T,6,,15,Тверь,ИП,№ 77/1,Сидоров Пётр Петрович,500100732259,Магазин,Сидоров +79160000009"


def registry(*rows: str) -> str:
    residents = [r + ",,,,,," for r in REGISTRY_CSV.splitlines()[1:]]
    return "\n".join([HEADER, *residents, *rows]) + "\n"


async def load(engine: AsyncEngine, tmp_path: Path, text: str) -> ImportReport:
    path = tmp_path / "registry.csv"
    path.write_text(text, encoding="utf-8")
    return await import_registry(engine, path)


def test_contacts_are_read_wherever_the_phone_and_address_stand() -> None:
    assert business.parse_contacts(CONTACTS) == (
        business.Contact("Иванов Иван Иванович", "+79160000001", "ivanov@romashka.ru"),
        business.Contact("Петрова Анна", "+79160000002", None),
    )
    with pytest.raises(ValueError, match="has neither a phone"):
        business.parse_contacts("Без телефона")
    with pytest.raises(ValueError, match="one phone and one e-mail per contact"):
        business.parse_contacts("Двое +79160000001 +79160000002")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (("7707083893", "7707083894"), "inn '7707083894': its check digits are wrong (a typo?)"),
        (("7707083893", "500100732259"), "inn '500100732259' of a legal is 10 digits"),
        ((",legal,", ",llc,"), "kind 'llc' is not person, legal (ЮЛ) or entrepreneur (ИП)"),
        (("12-345/2024", "12-345/2024?"), "contract '12-345/2024?': 1-32 letters"),
        (
            ("+79160000001; Петрова Анна, 8 (916) 000-00-02", ""),
            "contacts: at least one contact with a phone",
        ),
        ((",legal,", ",,"), "contract, name, inn, contacts given for a person's account"),
    ],
)
def test_a_wrong_business_row_is_refused_with_its_reason(change: tuple[str, str], reason: str) -> None:
    row = ROMASHKA[0].replace(*change)
    assert row != ROMASHKA[0]
    rows, refused = parse_rows(registry(row))
    assert not [r for r in rows if r.serial.startswith("B-")]
    [(line, why)] = refused
    assert line == 9 and why.startswith(reason), why


def test_one_contract_is_one_account() -> None:
    other = ROMASHKA[1].replace("3000001,B-2", "3000005,B-5").replace("12-345/2024", "№ 12-345/2024")
    rows, refused = parse_rows(registry(ROMASHKA[0], other, SOLE))
    assert refused == [(10, "contract '№ 12-345/2024' is already account 3000001's")]
    assert {r.serial: r.business.kind for r in rows if r.business} == {"B-1": "legal", "B-9": "entrepreneur"}


async def test_the_registry_stores_customers_contacts_and_points(engine: AsyncEngine, tmp_path: Path) -> None:
    report = await load(engine, tmp_path, registry(*ROMASHKA, SOLE))
    assert not report.refused and report.added == 7 + 4
    found = await business.customer(engine, "3000001")
    assert found is not None
    assert (found.kind, found.contract, found.name, found.inn) == (
        "legal",
        "12-345/2024",
        'ООО "Ромашка"',
        "7707083893",
    )
    assert [(c.name, c.phone, c.email) for c in found.contacts] == [
        ("Иванов Иван Иванович", "+79160000001", "ivanov@romashka.ru"),
        ("Петрова Анна", "+79160000002", None),
    ]
    async with engine.connect() as conn:
        query = select(meters.c.serial, meters.c.point).where(meters.c.serial.like("B-%"))
        points = {r.serial: r.point for r in await conn.execute(query)}
    assert points == {"B-1": "Цех 1, ввод 1", "B-2": "Цех 2", "B-3": "Склад", "B-9": "Магазин"}
    assert await business.customer(engine, "1000001") is None  # a resident's account
    report_lines = await privacy_report(engine, Config(), "3000001") or []
    assert "  contact:   Петрова Анна, phone +79160000002, e-mail -" in report_lines

    again = await load(engine, tmp_path, registry(*ROMASHKA, SOLE))
    assert (again.added, again.changed, again.unchanged) == (0, 0, 11)
    moved = [r.replace("+79160000001", "+79160000003") for r in ROMASHKA]
    changed = await load(engine, tmp_path, registry(*moved, SOLE))
    assert changed.changed == 3  # every row of the contract whose contact changed
    assert await business.contact_of(engine, "12-345/2024", "+79160000001") is None
    hit = await business.contact_of(engine, "№ 12-345/2024", "8 916 000-00-03")
    assert hit is not None and hit[0].number == "3000001" and hit[1].name == "Иванов Иван Иванович"
    # The same account, now a resident's: the contract and its contacts go.
    person = [r.replace(CUSTOMER, '"Тверь, Заводская 1",,,,').split(',"Иванов')[0] + "," for r in ROMASHKA]
    assert not (await load(engine, tmp_path, registry(*person, SOLE))).refused
    assert await business.customer(engine, "3000001") is None
    assert await business.contact_of(engine, "12-345/2024", "+79160000003") is None


async def test_a_contract_moved_to_another_account_follows_the_file(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await load(engine, tmp_path, registry(*ROMASHKA))
    moved = [r.replace("3000001,", "3000007,") for r in ROMASHKA]
    assert not (await load(engine, tmp_path, registry(*moved))).refused
    hit = await business.contact_of(engine, "12-345/2024", "+79160000001")
    assert hit is not None and hit[0].number == "3000007"


async def test_the_desk_finds_a_customer_by_contract_inn_and_name(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await load(engine, tmp_path, registry(*ROMASHKA, SOLE))
    for query, expected in [
        ("12-345/2024", ["3000001"]),
        ("№ 77/1", ["3000002"]),
        ("7707083893", ["3000001"]),
        ("500100732259", ["3000002"]),
        ("ромашка", ["3000001"]),
        ("Сидоров", ["3000002"]),
        ("77/2", []),
    ]:
        found = await account_views.find_accounts(engine, query)
        assert [a.number for a in found] == expected, query


async def test_an_account_number_alone_verifies_no_business_customer(
    engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    # The business account has a phone in its registry row too: still no code, no match.
    await load(
        engine,
        tmp_path,
        registry(*ROMASHKA).replace("Меркурий 230,T1;T2,6,,", "Меркурий 230,T1;T2,6,+79160000001,"),
    )
    verifier = Verifier(VerificationConfig(code_to_log=True), [LogCodeSender()])
    await verifier.start(engine, NOW)
    cabinet = Purpose("cabinet", "{code}")
    asking = Key("code_send", ANY, "10.0.0.1")
    rule = Rule(20, 60)
    assert await verifier.send_code(engine, "1000001", cabinet, asking, rule, NOW) == ["log"]
    assert await verifier.send_code(engine, "3000001", cabinet, asking, rule, NOW) == []
    limits = [(Key("t", "3000001", "chat:1"), Rule(5, 60))]
    assert not (await verifier.check_phone(engine, "3000001", "+79160000001", limits, NOW)).ok
    # Its contact gets a code on that phone alone, and it opens the door for that contact only.
    door = Purpose("business", "Код: {code}")
    sent = await verifier.send_code_to_contact(engine, "12-345/2024", "+79160000001", door, asking, rule, NOW)
    assert sent == ["log"]
    pattern = r"phone \+7 9\*\* \*\*\*-\*\*-\*\*, Код: (\d{6})"
    [code] = [m.group(1) for r in caplog.records if (m := re.search(pattern, r.getMessage()))]
    for contract, phone in [("12-345/2024", "+79160000002"), ("99/9", "+79160000001")]:
        checked, found = await verifier.check_contact_code(engine, contract, phone, door, code, limits, NOW)
        assert checked.checked and not checked.ok and found is None
    checked, found = await verifier.check_contact_code(
        engine, "№12-345/2024", "89160000001", door, code, limits, NOW
    )
    assert checked.ok and found is not None and found[1].name == "Иванов Иван Иванович"
