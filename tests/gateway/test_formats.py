"""Text formats as data: the shipped declarations and their vectors, an operator's own, broken
ones named, `meter-gateway formats check`, the configuration, and the registry's choice between
two readings of a text (gateway/text_intake.py)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import ConfigError, load_config
from gateway.formats import DEFAULT_ENABLED, FormatError, format_set, load_formats, shapes
from gateway.formats_check import check_formats
from gateway.grammar import ParsedReading, parse_message
from gateway.model import Channel, Submission
from gateway.text_intake import TextReading, choose, read_text
from gateway.validation.context import MeterInfo
from tests.conftest import FakeClock

OWN = """
id = "my-retailer"
retailer = "Our own"
layouts = ["account values [email]"]
example = "7654321 100"

[[vectors]]
text = "7654321 100 a@b.ru"
account = "7654321"
values = ["100"]
contact = "a@b.ru"
"""


def test_shipped_formats_pass_their_vectors() -> None:
    good, errors = check_formats(None, [*DEFAULT_ENABLED, "sakhalin"])
    assert errors == []
    assert {f.id for f in good} == {*DEFAULT_ENABLED, "sakhalin"}
    assert all(len(f.vectors) >= 3 for f in good)


def test_layouts_expand_optional_parts() -> None:
    assert shapes("account values [email]") == ["account values", "account values email"]
    with pytest.raises(ValueError, match="unknown part 'meter'"):
        shapes("account meter values")


@pytest.mark.parametrize(
    ("line", "broken", "named"),
    [
        (
            'example = "7654321 100"',
            'example = "7654321 100 and a long tail of words"',
            "example: Value error, at most 30",
        ),
        ('layouts = ["account values [email]"]', 'layouts = ["account sum"]', "unknown part 'sum'"),
        ('values = ["100"]', 'values = ["101"]', "'7654321 100 a@b.ru': read as account 7654321, values 100"),
    ],
)
def test_broken_declarations_are_named(tmp_path: Path, line: str, broken: str, named: str) -> None:
    (tmp_path / "mine.toml").write_text(OWN.replace(line, broken), encoding="utf-8")
    _, errors = check_formats(str(tmp_path), ["standard"])
    assert len(errors) == 1 and errors[0].startswith(str(tmp_path / "mine.toml")), errors
    assert named in errors[0], errors[0]


def test_an_operators_format_is_added_and_replaces_a_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(OWN, encoding="utf-8")
    (tmp_path / "standard.toml").write_text(OWN.replace('"my-retailer"', '"standard"'), encoding="utf-8")
    known = load_formats(str(tmp_path))
    assert known["my-retailer"].retailer == "Our own" and known["standard"].example == "7654321 100"
    mine = format_set(("my-retailer",), str(tmp_path))
    assert mine.trailing_email and mine.example == "7654321 100"
    (tmp_path / "again.toml").write_text(OWN, encoding="utf-8")
    with pytest.raises(FormatError, match="id 'my-retailer' is also declared in"):
        load_formats(str(tmp_path))


def test_formats_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["formats", "check"]) == 0
    out, err = capsys.readouterr()
    assert "energosbyt-plus: ЭнергосбыТ Плюс" in out and "sakhalin: Сахалинэнерго (not enabled)" in out
    assert "codes: Э = T, ЭД = T1, ЭН = T2" in out and err.strip().endswith("7 formats, 0 errors")
    (tmp_path / "mine.toml").write_text(OWN.replace('values = ["100"]', 'values = ["1"]'), encoding="utf-8")
    assert main(["formats", "check", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "error: " in err and "mine.toml: vectors[0]" in err and "1 errors" in err


def test_configuration_names_an_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"text_formats: .*unknown formats nope \(declared: bryansk"):
        load_config(None, {"GATEWAY_TEXT_FORMATS_ENABLED": '["standard", "nope"]'})
    (tmp_path / "mine.toml").write_text(OWN, encoding="utf-8")
    config = load_config(
        None, {"GATEWAY_TEXT_FORMATS_ENABLED": '["my-retailer"]', "GATEWAY_TEXT_FORMATS_DIR": str(tmp_path)}
    )
    assert config.text_formats.formats().example == "7654321 100"


# --- the registry chooses between two readings of a text ----------------------------------------


def meter(serial: str, zones: tuple[str, ...]) -> MeterInfo:
    return MeterInfo(1, 1, "1000001", serial, zones, 6, Decimal(10), True)


def reading_of(text: str, clock: FakeClock) -> TextReading:
    formats = format_set(DEFAULT_ENABLED)
    sub = Submission(Channel.SMS, clock(), "+79160000000", text=text)
    found = read_text(sub, formats)
    assert isinstance(found, TextReading)
    return found


@pytest.mark.parametrize(
    ("registry", "chosen"),
    [
        ({"45871234": ("T",), None: ("T",)}, "45871234"),  # a single-rate meter: the serial fits
        ({None: ("T1", "T2")}, None),  # no such serial; two values fit the day/night meter
        ({"45871234": ("T",), None: ("T1", "T2")}, "both"),  # both fit: the sender is asked
        ({None: ("T",)}, "none"),  # neither fits
    ],
)
def test_the_registry_chooses(
    registry: dict[str | None, tuple[str, ...]], chosen: str | None, clock: FakeClock
) -> None:
    text = reading_of("1000001 45871234 1234", clock)

    def resolve(sub: Submission) -> tuple[MeterInfo | None, None]:
        zones = registry.get(sub.meter_serial)
        return (meter(sub.meter_serial or "M-1", zones) if zones else None), None

    sub, found, problem = choose(text, resolve, format_set(DEFAULT_ENABLED))
    if chosen in ("both", "none"):
        assert found is None and problem is not None and problem.code == "format_unclear"
        assert problem.message_ru == "Непонятно: «45871234». Пример: 1234567 12345 (ЛС показание)"
    else:
        assert problem is None and found is not None and sub.meter_serial == chosen
        assert sub.positional_values == (("1234",) if chosen else ("45871234", "1234"))


def test_a_door_hands_its_parse_and_the_core_does_not_parse_again(clock: FakeClock) -> None:
    formats = format_set(DEFAULT_ENABLED)
    parsed = parse_message("1000001 1Э1234 1Г5", formats)
    assert isinstance(parsed, ParsedReading)
    sub = Submission(Channel.SMS, clock(), "+79160000000", text="not parsed again", reading=parsed)
    found = read_text(sub, formats)
    assert isinstance(found, TextReading)
    assert found.candidates[0].positional_values == ("1234",) and found.meter_number == 1
    assert [n.message_ru for n in found.notes] == ["Не приняты: 1Г. Только электроэнергия"]
