"""SMS texts: one UCS-2 SMS (70 characters) wherever the numbers allow, never more than two parts."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.sms.text import (
    MAX_CHARS,
    NOTHING_TO_CONFIRM,
    SEND_CORRECTED,
    SUBSCRIBED,
    UNSUBSCRIBED,
    choose,
    cut,
    is_gsm7,
    needs_ucs2,
    render_help,
    render_reminder,
    render_verdict,
    sms_parts,
    utf16_units,
)
from gateway.model import ReadingOut, Reason, Severity, Status, Verdict


def accepted(
    *values: tuple[str, str], account: str = "1000002", receipt: int = 123, reasons: tuple[Reason, ...] = ()
) -> Verdict:
    readings = tuple(ReadingOut(i, zone, Decimal(v)) for i, (zone, v) in enumerate(values, 1))
    return Verdict(Status.ACCEPTED, reasons, receipt, account, "M-2", "2026-11", readings)


def test_counting_follows_the_phone() -> None:
    assert utf16_units("Привет") == 6
    assert utf16_units("🙂") == 2  # outside the BMP: a surrogate pair
    assert sms_parts("") == 0
    assert sms_parts("Я" * 70) == 1 and sms_parts("Я" * 71) == 2
    assert sms_parts("Я" * 134) == 2 and sms_parts("Я" * 135) == 3
    assert sms_parts("a" * 160) == 1 and sms_parts("a" * 161) == 2  # GSM 7-bit
    assert sms_parts("[" * 80) == 1 and sms_parts("[" * 81) == 2  # extension characters take two septets
    assert is_gsm7("Hello @ 12345") and not is_gsm7("Т1 12345")
    assert needs_ucs2("Принято") and not needs_ucs2("OK 12345")


def test_confirmation_echoes_zones_account_and_receipt_in_one_sms() -> None:
    text = render_verdict(accepted(("T2", "4567"), ("T1", "12345")))
    assert text == "Принято: Т1 12345, Т2 4567 (л/с 1000002). №123"
    assert sms_parts(text) == 1
    single = render_verdict(accepted(("T", "12345.6"), account="1000001", receipt=7))
    assert single == "Принято: 12345.6 (л/с 1000001). №7"


def test_meter_is_named_when_the_message_named_it() -> None:
    text = render_verdict(accepted(("T", "12345"), account="1000004"), show_meter=True)
    assert text == "Принято: 12345 (л/с 1000004, сч. M-2). №123"


def test_next_period_notice_is_never_dropped() -> None:
    note = Reason("next_period", Severity.INFO, "Учтём в декабре: приём до 25-го", "counted for 2026-12")
    text = render_verdict(accepted(("T1", "12345"), ("T2", "4567"), reasons=(note,)))
    assert "Учтём в декабре" in text
    assert utf16_units(text) <= MAX_CHARS
    # Detail goes before the notice does: the account and receipt are dropped first to stay in one SMS.
    assert sms_parts(text) == 1, text


def test_long_three_zone_reading_still_fits_two_parts() -> None:
    note = Reason("next_period", Severity.INFO, "Учтём в декабре: приём до 25-го", "x")
    verdict = accepted(
        ("T1", "123456.789"),
        ("T2", "123456.789"),
        ("T3", "123456.789"),
        account="123456789012",
        reasons=(note,),
    )
    text = render_verdict(verdict, show_meter=True)
    assert sms_parts(text) <= 2 and utf16_units(text) <= MAX_CHARS
    assert "123456.789" in text and "Учтём в декабре" in text


def test_rejection_is_the_first_reasons_message() -> None:
    why = Reason("unknown_sender", Severity.REJECT, "Укажите номер л/с: 1234567 12345", "x")
    info = Reason("next_period", Severity.INFO, "Учтём в декабре: приём до 25-го", "x")
    text = render_verdict(Verdict(Status.REJECTED, (info, why), 5))
    assert text == "Не принято. Укажите номер л/с: 1234567 12345"
    long = Reason("x", Severity.REJECT, "Ж" * 65, "x")
    assert render_verdict(Verdict(Status.REJECTED, (long,), 5)) == "Ж" * 65  # the prefix gives way


def test_needs_confirmation_asks_for_yes() -> None:
    why = Reason(
        "unexpected_consumption",
        Severity.CONFIRM,
        "расход 800 кВт·ч, обычно 210-480. Подтвердите или исправьте",
        "x",
    )
    verdict = Verdict(
        Status.NEEDS_CONFIRMATION,
        (why,),
        9,
        "1000001",
        "M-1",
        "2026-11",
        (ReadingOut(1, "T", Decimal(2400)),),
    )
    text = render_verdict(verdict)
    assert text.endswith("ответьте ДА") and "расход 800" in text
    assert sms_parts(text) <= 2


def test_flagged_says_it_is_being_checked() -> None:
    why = Reason("source_mismatch", Severity.FLAG, "расходится с прибором учёта", "x")
    verdict = Verdict(
        Status.FLAGGED, (why,), 9, "1000001", "M-1", "2026-11", (ReadingOut(1, "T", Decimal(2400)),)
    )
    assert render_verdict(verdict).startswith("Получено, на проверке: 2400")


@pytest.mark.parametrize(
    "text", [NOTHING_TO_CONFIRM, UNSUBSCRIBED, SUBSCRIBED, SEND_CORRECTED, render_help()]
)
def test_command_answers_fit_one_sms(text: str) -> None:
    assert 0 < utf16_units(text) <= 70


def test_reminders_fit_one_sms_and_name_the_accounts() -> None:
    end = date(2026, 11, 25)
    start = render_reminder("window_start", ["1000001"], end, date(2026, 11, 16))
    assert start == "Передайте показания по л/с 1000001 до 25.11. Пример: 1000001 12345"
    last = render_reminder("last_day", ["1000001", "1000005"], end, end)
    assert "Сегодня последний день" in last and "1000005" in last and sms_parts(last) == 1
    moved = render_reminder("last_day", ["1000001"], end, date(2026, 11, 24))  # the 25th is a holiday
    assert "до 25.11" in moved and "Сегодня" not in moved
    many = render_reminder("window_start", [str(10**11 + i) for i in range(40)], end, date(2026, 11, 16))
    assert sms_parts(many) == 1 and "и ещё 39" in many and "25.11" in many


def test_cut_and_choose_keep_the_limit() -> None:
    assert cut("Привет мир", 6) == "Приве…"
    assert choose(["Я" * 200, "Я" * 100]) == "Я" * 100  # two parts, as nothing fits one
    assert choose(["Я" * 80, "Я" * 60]) == "Я" * 60  # one part wins over detail
    assert utf16_units(choose(["Я" * 300])) == MAX_CHARS


zones = st.sampled_from(["T", "T1", "T2", "T3"])
numbers = st.decimals(
    min_value=0, max_value=Decimal("9999999999.999"), places=3, allow_nan=False, allow_infinity=False
)
messages = st.text(alphabet="абвгдежзийклмнопрстуфхцчшщъыьэюя0123456789 .,:-", min_size=1, max_size=120)


@given(
    st.lists(st.tuples(zones, numbers), min_size=1, max_size=3, unique_by=lambda zv: zv[0]),
    st.sampled_from(list(Status)),
    messages,
    st.text(alphabet="0123456789", min_size=5, max_size=16),
    st.integers(min_value=1, max_value=10**12),
    st.booleans(),
)
def test_no_verdict_ever_takes_more_than_two_parts(
    values: list[tuple[str, Decimal]], status: Status, message: str, account: str, receipt: int, meter: bool
) -> None:
    severity = {
        Status.REJECTED: Severity.REJECT,
        Status.NEEDS_CONFIRMATION: Severity.CONFIRM,
        Status.FLAGGED: Severity.FLAG,
        Status.ACCEPTED: Severity.INFO,
    }[status]
    verdict = Verdict(
        status,
        (Reason("x", severity, message, "x"),),
        receipt,
        account,
        "SERIAL-" + account,
        "2026-11",
        tuple(ReadingOut(i, z, v) for i, (z, v) in enumerate(values)),
    )
    for limit in (70, 100, MAX_CHARS):
        text = render_verdict(verdict, limit, show_meter=meter)
        assert text and utf16_units(text) <= limit and sms_parts(text) <= 2
