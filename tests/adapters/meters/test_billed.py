"""Which counter of a zone a poll books and its conversion to kWh, as the firmware profile declares
them (`billed_quantities`, the energy registers' `unit`), checked by `profiles check`."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from adapters.meters.poller import kwh_text, zone_values
from adapters.meters.profiles import (
    DEFAULT_DIR,
    Profile,
    ProfileError,
    check_profiles,
    describe,
    load_profile,
    load_profiles,
)
from tests.adapters.meters.test_profiles import MINIMAL, write

# Import, total and net counters of zone T, and an import counter of T1 in Wh.
COUNTERS = (
    MINIMAL
    + """
[[registers]]
name = "total_t"
quantity = "energy_total"
zone = "T"
function = 4
address = 10
type = "uint32"
unit = "kWh"

[[registers]]
name = "net_t"
quantity = "energy_net"
zone = "T"
function = 4
address = 12
type = "uint32"

[[registers]]
name = "import_t1"
quantity = "energy_import"
zone = "T1"
function = 4
address = 14
type = "uint32"
unit = "Wh"
"""
)
VALUES = {
    "import_total": Decimal("100"),
    "total_t": Decimal("150"),
    "net_t": Decimal("50"),
    "import_t1": Decimal("12345"),
}


def _with_billed(tmp_path: Path, billed: str) -> Profile:
    text = COUNTERS.replace(
        "response_time_ms = 100\n", f"response_time_ms = 100\nbilled_quantities = {billed}\n"
    )
    return load_profile(write(tmp_path, "acme_m1", text))


def _old_rule(profile: Profile) -> dict[str, str]:
    """The rule the poller applied before profiles declared it: import, else total, else net."""
    by_zone: dict[str, str] = {}
    for quantity in ("energy_import", "energy_total", "energy_net"):
        for reg in profile.energy_registers():
            if reg.quantity == quantity and reg.zone and reg.zone not in by_zone:
                by_zone[reg.zone] = reg.name
    return by_zone


def test_every_shipped_profile_bills_as_before() -> None:
    for profile in load_profiles(DEFAULT_DIR).values():
        assert profile.billed_quantities == ("energy_import", "energy_total", "energy_net")
        assert {z: r.name for z, r in profile.billed_registers().items()} == _old_rule(profile)
        assert all(r.unit == "kWh" for r in profile.billed_registers().values()), profile.id


def test_the_default_bills_import_and_converts_wh(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, "acme_m1", COUNTERS))
    assert {z: r.name for z, r in profile.billed_registers().items()} == {
        "T": "import_total",
        "T1": "import_t1",
    }
    assert zone_values(profile, VALUES, ("T", "T1")) == {"T": Decimal("100"), "T1": Decimal("12.345")}
    assert kwh_text(zone_values(profile, VALUES, ("T1",))["T1"] or Decimal(0)) == "12.345"


def test_a_declared_order_chooses_the_counter(tmp_path: Path) -> None:
    total_first = _with_billed(tmp_path, '["energy_total", "energy_import"]')
    assert zone_values(total_first, VALUES, None) == {"T": Decimal("150"), "T1": Decimal("12.345")}
    net_only = _with_billed(tmp_path, '["energy_net"]')
    assert zone_values(net_only, VALUES, None) == {"T": Decimal("50")}  # T1 has no net counter
    assert zone_values(net_only, VALUES, ("T", "T1")) == {"T": Decimal("50")}  # the core names T1 missing


@pytest.mark.parametrize(
    ("unit", "kwh"), [("Wh", "0.5"), ("wh", "0.5"), ("kWh", "500"), ("MWh", "500000"), (None, "500")]
)
def test_the_declared_unit_converts_to_kwh(tmp_path: Path, unit: str | None, kwh: str) -> None:
    text = MINIMAL.replace('unit = "kWh"\n', "" if unit is None else f'unit = "{unit}"\n', 1)
    profile = load_profile(write(tmp_path, "acme_m1", text))
    assert zone_values(profile, {"import_total": Decimal(500)}, None) == {"T": Decimal(kwh)}


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        (
            ("response_time_ms = 100\n", 'response_time_ms = 100\nbilled_quantities = ["power"]\n'),
            "billed_quantities[0]",
            "only an energy counter",
        ),
        (
            ("response_time_ms = 100\n", 'response_time_ms = 100\nbilled_quantities = ["energy_imprt"]\n'),
            "billed_quantities[0]",
            "only an energy counter",
        ),
        (
            (
                "response_time_ms = 100\n",
                'response_time_ms = 100\nbilled_quantities = ["energy_net", "energy_net"]\n',
            ),
            "billed_quantities[1]",
            "listed twice",
        ),
        (
            ("response_time_ms = 100\n", "response_time_ms = 100\nbilled_quantities = []\n"),
            "billed_quantities",
            "at least 1",
        ),
        (('unit = "kWh"\n', 'unit = "kvarh"\n'), "registers[0].unit", "Wh, kWh or MWh"),
    ],
)
def test_profiles_check_refuses_what_cannot_be_billed(
    tmp_path: Path, change: tuple[str, str], key: str, reason: str
) -> None:
    path = write(tmp_path, "acme_m1", MINIMAL.replace(*change, 1))
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert (info.value.key, reason in info.value.reason) == (key, True), str(info.value)
    loaded, errors = check_profiles(tmp_path)
    assert loaded == [] and any(f"{path}: {key}: " in e and reason in e for e in errors), errors


def test_a_non_energy_register_keeps_any_unit(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, "acme_m1", MINIMAL))  # its voltage register is in "V"
    assert profile.register("voltage").unit == "V"


def test_describe_shows_what_is_billed(tmp_path: Path) -> None:
    text = describe(_with_billed(tmp_path, '["energy_total", "energy_import"]'))
    assert "billed:         T total_t (kWh), T1 import_t1 (Wh); first of energy_total, energy_import" in text
