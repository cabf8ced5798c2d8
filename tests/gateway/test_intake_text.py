"""Free text from residents goes through the one grammar inside the core intake."""

from __future__ import annotations

from gateway.intake import Intake
from gateway.model import Channel, Status, Submission
from tests.conftest import FakeClock


def sms(clock: FakeClock, text: str, sender: str = "+79161234568", mid: str | None = None) -> Submission:
    return Submission(Channel.SMS, clock(), sender, text=text, channel_message_id=mid)


async def test_day_night_by_position_maps_to_the_meters_zones(intake: Intake, clock: FakeClock) -> None:
    verdict = await intake.submit(sms(clock, "1000002 12345,6 4567"))
    assert verdict.status is Status.ACCEPTED
    assert verdict.account == "1000002" and verdict.meter_serial == "M-2"
    assert [(r.zone, str(r.value)) for r in verdict.readings] == [("T1", "12345.6"), ("T2", "4567")]


async def test_zone_words_and_no_account_resolve_by_the_senders_phone(
    intake: Intake, clock: FakeClock
) -> None:
    verdict = await intake.submit(sms(clock, "ночь 4567 день 12345"))
    assert verdict.status is Status.ACCEPTED
    assert verdict.account == "1000002"
    assert {r.zone: str(r.value) for r in verdict.readings} == {"T1": "12345", "T2": "4567"}


async def test_one_value_for_a_two_zone_meter_is_explained(intake: Intake, clock: FakeClock) -> None:
    verdict = await intake.submit(sms(clock, "1000002 12345"))
    assert verdict.status is Status.REJECTED
    assert verdict.reasons[0].code == "zones_mismatch"
    assert verdict.reasons[0].message_ru == "Нужно 2 показания: Т1 (день), Т2 (ночь)"


async def test_unreadable_text_gets_the_grammars_explanation(intake: Intake, clock: FakeClock) -> None:
    verdict = await intake.submit(sms(clock, "привет как дела", mid="sms-1"))
    assert verdict.status is Status.REJECTED
    assert verdict.reasons[0].code.startswith("format_")
    assert len(verdict.reasons[0].message_ru) <= 70
    again = await intake.submit(sms(clock, "привет как дела", mid="sms-1"))
    assert again.duplicate and again.receipt == verdict.receipt
