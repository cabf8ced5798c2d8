"""Every retailer's published SMS format, and the variants residents really type, through real
Kannel (fakesmsc -> bearerbox -> smsbox -> the gateway's Kannel route -> the reply fakesmsc gets),
with the expected zones and values in the reply and in the database, and the refusals with
their reasons. One gateway and one Kannel for the whole corpus: each case has an account of its
own (and its own registered phone), so no case's history judges another's values.

Skipped only when the Kannel binaries are missing outside CI, like test_kannel_e2e.py.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.formats import DEFAULT_ENABLED
from gateway.service import Gateway
from gateway.store.schema import accounts, meters, readings
from tests.adapters.sms.kannel_rig import KannelRig, kannel_binaries
from tests.conftest import FakeClock, make_config

if kannel_binaries() is None:
    if os.environ.get("CI") == "true":
        pytest.fail("Kannel is not installed (scripts/system-deps.sh installs it)", pytrace=False)
    pytest.skip("Kannel is not installed (apt-get install kannel kannel-extras)", allow_module_level=True)

KEY = "formats-kannel-key"
HOUSE = "1234567 12345 (ЛС показание)"  # the first enabled format's example, shown in refusals


@dataclass(frozen=True)
class Case:
    """`{a}` is the case's account, `{s}` its (first) meter's serial."""

    text: str
    zones: str = "T"  # the meter's zones; "T|T": two single-rate meters on the account
    accepted: str | None = None  # the values as the reply echoes them: "1234", "Т1 12345, Т2 6789"
    refused: str | None = None  # the whole reply
    named: bool = False  # the text named the meter: the reply echoes it
    note: str = ""  # told after the receipt (which gives way to it when both do not fit one SMS)
    meter: int = 1  # which of the account's meters got it
    pskov: bool = False  # a 10-digit account


DN = "T1;T2"
CORPUS: list[Case] = [
    # ЭнергосбыТ Плюс: code and value glued, the meter numbered on the account
    Case("{a} 1Э1234", accepted="1234"),
    Case("{a} 1э1234", accepted="1234"),
    Case("  {a}   1Э1234 ", accepted="1234"),
    Case("{a} 1Э1234,5", accepted="1234.5"),
    Case("{a} 1ЭД12345 1ЭН6789", DN, accepted="Т1 12345, Т2 6789"),
    Case("{a} 1ЭН6789 1ЭД12345", DN, accepted="Т1 12345, Т2 6789"),  # night first
    Case("{a} 1эд12345 1эн6789", DN, accepted="Т1 12345, Т2 6789"),
    Case("{a} 1ЭД12345 1ЭH6789", DN, accepted="Т1 12345, Т2 6789"),  # Latin H
    Case("{a} 1ЭД12345,1ЭН6789", DN, accepted="Т1 12345, Т2 6789"),  # a comma between
    Case("{a} 2Э1234", "T|T", accepted="1234", meter=2),
    Case("{a} 1Э1234 1Г12 1Х5", accepted="1234", note="Не приняты: 1Г, 1Х. Только электроэнергия"),
    Case("{a} 1Г12", refused="Не принято. «1Г» (горячая вода) не принимаем: только электроэнергия"),
    Case("{a} 1Х5 2Х7", refused="Не принято. «1Х» (холодная вода) не принимаем: только электроэнергия"),
    Case("{a} 3Э1234", "T|T", refused="Не принято. У л/с {a} нет счётчика №3"),
    Case("{a} 1Э1234 2Э5678", "T|T", refused="Не принято. Один счётчик в сообщении. Пример: 1234567 1Э12345"),
    # Газпром энергосбыт Брянск: a trailing e-mail is a contact, never a refusal
    Case("{a} 1234 ivan@mail.ru", accepted="1234"),
    Case("{a} 1234 ivаn@маil.ru", accepted="1234"),  # Cyrillic look-alikes in the address
    Case("{a}, 1234, Ivan.Petrov@Mail.Ru.", accepted="1234"),
    Case("{a} 12345 6789 ivan@mail.ru", DN, accepted="Т1 12345, Т2 6789"),
    # Дальэнергосбыт: account, the meter's number, the reading(s); the registry tells a serial
    Case("{a} {s} 1234", accepted="1234", named=True),
    Case("{a}  {s}  1234,5", accepted="1234.5", named=True),
    Case("{a} {s} 12345 6789", DN, accepted="Т1 12345, Т2 6789", named=True),
    Case("{a} {s} день 12345 ночь 6789", DN, accepted="Т1 12345, Т2 6789", named=True),
    Case("{a} 12345 6789", DN, accepted="Т1 12345, Т2 6789"),  # 12345 is no serial: two values
    Case(
        "{a} 45879999 1234", refused=f"Непонятно: «45879999». Пример: {HOUSE}"
    ),  # one SMS: no room for "Не принято"
    # Свердловэнергосбыт: "ЛС показание", "ЛС день ночь"
    Case("{a} 1234", accepted="1234"),
    Case("{a}\n1234", accepted="1234"),
    Case("{a};1234", accepted="1234"),
    Case("ЛС {a} 1234", accepted="1234"),
    Case("л/с {a} показания 1234 кВт", accepted="1234"),
    Case("{a} 12345 6789", DN, accepted="Т1 12345, Т2 6789"),
    Case("{a} ДЕНЬ 12345 НОЧЬ 6789", DN, accepted="Т1 12345, Т2 6789"),
    Case("{a} ночь 6789 день 12345", DN, accepted="Т1 12345, Т2 6789"),
    Case("{a} T1 12345 T2 6789", DN, accepted="Т1 12345, Т2 6789"),  # Latin T
    # Псковэнергосбыт: a 10-digit account, integers
    Case("{a} 12345", accepted="12345", pskov=True),
    Case("{a} 12345 6789", DN, accepted="Т1 12345, Т2 6789", pskov=True),
    # Сахалинэнерго: ЛС#№ПУ#П1#П2, digits before the comma only (cut, and said)
    Case("{a}#{s}#1234", accepted="1234", named=True),
    Case("{a}#№{s}#1234", accepted="1234", named=True),
    Case("{a} # {s} # 1234 #", accepted="1234", named=True),
    Case("{a}#{s}#12345#6789", DN, accepted="Т1 12345, Т2 6789", named=True),
    Case("{a}#{s}#1234,56", accepted="1234", named=True, note="Учтено без дробной части"),
    # refusals of the house grammar, with the enabled format's example
    Case("{a} 12ж4", refused="Не принято. Не число: «12ж4». Пример: 1234567 12345,6"),
    Case("{a} 1234 как дела", refused=f"Не принято. Непонятно: «как». Пример: {HOUSE}"),
    Case("ЛС {a}", refused=f"Не принято. Нет показания. Пример: {HOUSE}"),
    Case("{a} 1234", DN, refused="Не принято. Нужно 2 показания: Т1 (день), Т2 (ночь)"),
]


def account_of(i: int, case: Case) -> str:
    return f"{6000000000 + i}" if case.pskov else f"{1100000 + i}"


def serial_of(i: int, k: int = 0) -> str:
    return f"{45870000 + 10 * i + k}"


def phone_of(i: int) -> str:
    return f"+7916555{i:04d}"


def registry(path: Path) -> Path:
    rows = ["account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address"]
    for i, case in enumerate(CORPUS):
        for k, zones in enumerate(case.zones.split("|")):
            rows.append(
                f"{account_of(i, case)},{serial_of(i, k)},Меркурий,{zones},6,{phone_of(i)},10,дом {i}"
            )
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


async def test_published_formats_through_kannel(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(
        db_url,
        tmp_path,
        registry={"csv": str(registry(tmp_path / "formats.csv"))},
        sms={"kannel_key": KEY, "replies_per_hour": 1000},
        text_formats={"enabled": [*DEFAULT_ENABLED, "sakhalin"]},
    )
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    assert gateway.port is not None
    rig = KannelRig(tmp_path / "kannel", gateway.port, KEY)
    try:
        await asyncio.to_thread(rig.start)
        for i, case in enumerate(CORPUS):
            text = case.text.format(a=account_of(i, case), s=serial_of(i))
            await asyncio.to_thread(rig.send, phone_of(i), text)
            await asyncio.sleep(0.02)  # fakesmsc reads its input line by line
        got = {i: (await asyncio.to_thread(rig.wait_for, phone_of(i)))[0].text for i in range(len(CORPUS))}
        async with gateway.engine.connect() as conn:
            stored = (
                await conn.execute(
                    select(accounts.c.number, meters.c.serial, readings.c.zone, readings.c.value)
                    .select_from(readings.join(meters, meters.c.id == readings.c.meter_id))
                    .join(accounts, accounts.c.id == readings.c.account_id)
                    .order_by(readings.c.zone)
                )
            ).all()
    finally:
        await asyncio.to_thread(rig.stop)
        await gateway.stop()

    problems = []
    for i, case in enumerate(CORPUS):
        account, serial = account_of(i, case), serial_of(i, case.meter - 1)
        text, reply = case.text.format(a=account, s=serial_of(i)), got[i]
        if len(reply.encode("utf-16-le")) // 2 > 70:
            problems.append(f"{text!r}: reply over one SMS: {reply!r}")
        if case.refused is not None or case.accepted is None:
            expected = (case.refused or "").format(a=account)
            if reply != expected:
                problems.append(f"{text!r}: {reply!r}, expected {expected!r}")
            continue
        where = f"л/с {account}, сч. {serial}" if case.named else f"л/с {account}"
        receipt = r"(\. №\d+)?" if case.note else r"\. №\d+"
        note = re.escape(f". {case.note}") if case.note else ""
        if not re.fullmatch(rf"Принято: {re.escape(f'{case.accepted} ({where})')}{receipt}{note}", reply):
            problems.append(f"{text!r}: {reply!r}, expected Принято: {case.accepted} ({where}). №…")
        mine = {(z, v) for a, s, z, v in stored if a == account and s == serial}
        want = {("T", case.accepted)} if case.zones == "T" or "|" in case.zones else set()
        if not want:
            want = {
                (z.replace("Т", "T"), v) for z, v in (pair.split(" ") for pair in case.accepted.split(", "))
            }
        if mine != want:
            problems.append(f"{text!r}: stored {mine}, expected {want}")
    assert not problems, "\n".join(problems)
    # nothing stored for the refused, nothing twice
    assert len(stored) == sum(1 if c.zones != DN else 2 for c in CORPUS if c.accepted)
