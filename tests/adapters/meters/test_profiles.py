"""Firmware profiles: loading/validation, decoding in all byte orders, read planning."""

from __future__ import annotations

import ast
import math
import struct
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.meters import profiles as gp
from adapters.meters.profiles import (
    DEFAULT_DIR,
    Profile,
    ProfileError,
    ReadBlock,
    Register,
    check_profiles,
    decode,
    describe,
    encode,
    load_profile,
    load_profiles,
    plan_reads,
    split_block,
)

PROFILE_DIR = DEFAULT_DIR  # the shipped profiles, package data
ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
SHIPPED = {
    "eastron_sdm120",
    "eastron_sdm630",
    "abb_b23",
    "carlo_gavazzi_em340",
    "schneider_iem3255",
    "wirenboard_wb_map3e",
}


def reg(
    type_: str,
    *,
    name: str = "x",
    order: str = "ABCD",
    scale: str = "1",
    function: int = 4,
    address: int = 0,
    nan_values: tuple[int, ...] = (),
    quantity: str = "voltage",
    zone: str | None = None,
) -> Register:
    return Register(
        name=name,
        quantity=quantity,
        zone=zone,
        function=function,
        address=address,
        type=type_,
        scale=Decimal(scale),
        unit="",
        byte_order=order,
        nan_values=nan_values,
    )


def make_profile(registers: list[Register], *, max_words: int = 40, max_gap: int = 8) -> Profile:
    return Profile(
        id="test",
        manufacturer="Acme",
        model="M1",
        source="Acme M1 Modbus map",
        byte_order="ABCD",
        max_registers_per_request=max_words,
        response_time_ms=100,
        identification={},
        registers=tuple(registers),
        test_vectors=(),
        max_gap_words=max_gap,
    )


def wire_words(order: str, big_endian: bytes) -> list[int]:
    """Independent reference for the byte-order table in the README."""
    words = [big_endian[i : i + 2] for i in range(0, len(big_endian), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


# --------------------------------------------------------------------------- shipped profiles


def test_shipped_profiles_load_and_all_vectors_pass() -> None:
    loaded, errors = check_profiles(PROFILE_DIR)
    assert errors == []
    assert SHIPPED <= {p.id for p in loaded}


def test_load_profiles_matches_check() -> None:
    profiles = load_profiles(PROFILE_DIR)
    assert SHIPPED <= set(profiles)
    for pid, profile in profiles.items():
        assert profile.id == pid
        assert profile.path is not None and profile.path.stem == pid


@pytest.mark.parametrize("pid", sorted(SHIPPED))
def test_each_shipped_profile_names_a_source_and_ships_vectors(pid: str) -> None:
    profile = load_profile(PROFILE_DIR / f"{pid}.toml")
    assert len(profile.source.strip()) > 20
    assert len(profile.test_vectors) >= 2
    assert any(v.expected is None for v in profile.test_vectors)
    assert any(v.expected is not None for v in profile.test_vectors)
    assert profile.energy_registers(), "every meter profile maps at least one energy counter"
    assert "T" in profile.zones()
    for block in plan_reads(profile):
        assert block.count <= profile.max_registers_per_request


def test_zones_and_energy_registers() -> None:
    abb = load_profile(PROFILE_DIR / "abb_b23.toml")
    assert abb.zones() == ("T", "T1", "T2", "T3", "T4")
    assert {r.quantity for r in abb.energy_registers()} == {"energy_import", "energy_export"}
    sdm = load_profile(PROFILE_DIR / "eastron_sdm630.toml")
    assert sdm.zones() == ("T",)
    assert sdm.identification["serial"].address == 0xFC00


def test_known_register_addresses() -> None:
    sdm120 = load_profile(PROFILE_DIR / "eastron_sdm120.toml")
    by_name = {r.name: r for r in sdm120.registers}
    assert (by_name["import_total"].function, by_name["import_total"].address) == (4, 0x0048)
    assert by_name["export_total"].address == 0x004A
    assert by_name["active_total"].address == 0x0156
    abb = load_profile(PROFILE_DIR / "abb_b23.toml")
    imp = abb.register("import_total")
    assert (imp.function, imp.address, imp.type, imp.scale) == (3, 0x5000, "uint64", Decimal("0.01"))
    em = load_profile(PROFILE_DIR / "carlo_gavazzi_em340.toml")
    assert (em.register("import_total").address, em.register("import_total").byte_order) == (0x0034, "CDAB")
    iem = load_profile(PROFILE_DIR / "schneider_iem3255.toml")
    assert (iem.register("import_total").address, iem.register("import_total").type) == (3203, "int64")


def test_describe_lists_every_register() -> None:
    for profile in load_profiles(PROFILE_DIR).values():
        text = describe(profile)
        assert profile.source in text
        for r in profile.registers:
            assert r.name in text
            # where the value is found: the Modbus address, or the data set's name (IEC 62056-21)
            assert (f"0x{r.address:04X}" if profile.protocol == "modbus" else r.code) in text
        for name in profile.identification:
            assert name in text


def test_profiles_package_does_not_import_pymodbus() -> None:
    imported: set[str] = set()
    modules = sorted(Path(gp.__file__).parent.glob("*.py"))
    assert len(modules) >= 5
    nodes = [n for m in modules for n in ast.walk(ast.parse(m.read_text(encoding="utf-8")))]
    for node in nodes:
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "pymodbus" not in imported


# --------------------------------------------------------------------------- decoding: known vectors


@pytest.mark.parametrize(
    ("order", "words"),
    [
        ("ABCD", [0x1122, 0x3344]),
        ("CDAB", [0x3344, 0x1122]),
        ("BADC", [0x2211, 0x4433]),
        ("DCBA", [0x4433, 0x2211]),
    ],
)
def test_uint32_byte_orders(order: str, words: list[int]) -> None:
    r = reg("uint32", order=order)
    assert decode(r, words) == 0x11223344
    assert encode(r, 0x11223344) == words


@pytest.mark.parametrize(
    ("order", "words"),
    [
        ("ABCD", [0x1122, 0x3344, 0x5566, 0x7788]),
        ("CDAB", [0x7788, 0x5566, 0x3344, 0x1122]),
        ("BADC", [0x2211, 0x4433, 0x6655, 0x8877]),
        ("DCBA", [0x8877, 0x6655, 0x4433, 0x2211]),
    ],
)
def test_uint64_byte_orders(order: str, words: list[int]) -> None:
    r = reg("uint64", order=order)
    assert decode(r, words) == 0x1122334455667788
    assert encode(r, 0x1122334455667788) == words


@pytest.mark.parametrize(
    ("order", "words"),
    [
        ("ABCD", [0x4640, 0xE666]),
        ("CDAB", [0xE666, 0x4640]),
        ("BADC", [0x4046, 0x66E6]),
        ("DCBA", [0x66E6, 0x4046]),
    ],
)
def test_float32_byte_orders_keep_the_displayed_decimal(order: str, words: list[int]) -> None:
    value = decode(reg("float32", order=order), words)
    assert value == Decimal("12345.6")
    assert str(value) == "12345.6"  # not 12345.599609375


def test_float64_and_signed_values() -> None:
    words = wire_words("ABCD", struct.pack(">d", -0.1))
    assert str(decode(reg("float64"), words)) == "-0.1"
    assert decode(reg("int16"), [0xFFFF]) == -1  # signed all-ones is a number, not a sentinel
    assert decode(reg("int32", scale="0.01"), [0xFFFD, 0xB5F7]) == Decimal("-1500.25")
    assert decode(reg("int64"), [0x8000, 0, 0, 0]) == -(2**63)


def test_integer_scaling_is_exact() -> None:
    value = decode(reg("uint64", scale="0.01"), [0, 0, 0x075B, 0xCD15])
    assert value == Decimal("1234567.89")
    assert str(value) == "1234567.89"
    assert decode(reg("uint16", scale="0.1"), [3]) == Decimal("0.3")  # not 0.30000000000000004


def test_float_scaling_has_no_spurious_digits() -> None:
    value = decode(reg("float32", scale="1000"), [0x4148, 0x0000])  # 12.5 kW -> W
    assert value == 12500
    assert str(value) == "12500"


# --------------------------------------------------------------------------- sentinels and BCD


@pytest.mark.parametrize(
    ("type_", "words"),
    [
        ("float32", [0x7FC0, 0x0000]),
        ("float32", [0xFFC0, 0x0000]),
        ("float32", [0x7F80, 0x0000]),
        ("float32", [0xFF80, 0x0000]),
        ("float64", [0x7FF8, 0, 0, 0]),
        ("uint16", [0xFFFF]),
        ("uint32", [0xFFFF, 0xFFFF]),
        ("uint64", [0xFFFF] * 4),
    ],
)
def test_builtin_sentinels_are_missing(type_: str, words: list[int]) -> None:
    big_endian = b"".join(w.to_bytes(2, "big") for w in words)
    for order in ORDERS:
        assert decode(reg(type_, order=order), wire_words(order, big_endian)) is None


def test_listed_nan_values_are_missing() -> None:
    r = reg("int32", nan_values=(0x7FFFFFFF,))
    assert decode(r, [0x7FFF, 0xFFFF]) is None
    assert decode(r, [0x7FFF, 0xFFFE]) == 0x7FFFFFFE
    # byte order applies before the comparison
    assert decode(reg("int32", order="CDAB", nan_values=(0x7FFFFFFF,)), [0xFFFF, 0x7FFF]) is None
    assert decode(reg("uint16", nan_values=(0x8000,)), [0x8000]) is None


def test_negative_nan_values_in_a_profile_are_twos_complement(tmp_path: Path) -> None:
    text = MINIMAL.replace('unit = "kWh"', 'unit = "kWh"\nnan_values = [-2147483648]').replace(
        'type = "uint32"', 'type = "int32"'
    )
    path = write(tmp_path, "acme_m1", text)
    r = load_profile(path).register("import_total")
    assert r.nan_values == (0x80000000,)
    assert decode(r, [0x8000, 0x0000]) is None


def test_bcd() -> None:
    assert decode(reg("bcd16"), [0x1234]) == 1234
    assert decode(reg("bcd32"), [0x0012, 0x3456]) == 123456
    assert decode(reg("bcd32", scale="0.01"), [0x0012, 0x3456]) == Decimal("1234.56")
    assert decode(reg("bcd32", order="CDAB"), [0x3456, 0x0012]) == 123456
    assert decode(reg("bcd16"), [0x12A4]) is None
    assert decode(reg("bcd32"), [0x0012, 0x345F]) is None
    assert decode(reg("bcd16"), [0xFFFF]) is None
    assert encode(reg("bcd32"), 9876) == [0x0000, 0x9876]
    with pytest.raises(ValueError):
        encode(reg("bcd16"), 10000)


def test_decode_rejects_bad_words() -> None:
    with pytest.raises(ValueError):
        decode(reg("uint32"), [1])
    with pytest.raises(ValueError):
        decode(reg("uint16"), [0x10000])


def test_encode_limits_and_sentinels() -> None:
    with pytest.raises(ValueError):
        encode(reg("uint16"), 65536)
    with pytest.raises(ValueError):
        encode(reg("int16"), -32769)
    with pytest.raises(ValueError):
        encode(reg("float32"), 1e300)
    for r in (reg("float32"), reg("uint32"), reg("int32", nan_values=(0x7FFFFFFF,)), reg("bcd16")):
        assert decode(r, encode(r, None)) is None
    assert decode(reg("float64"), encode(reg("float64"), math.nan)) is None
    with pytest.raises(ValueError):
        encode(reg("int32"), None)  # no sentinel known for this register


# --------------------------------------------------------------------------- round-trip properties

INT_TYPES = {
    "uint16": (0, 2**16 - 2),
    "int16": (-(2**15), 2**15 - 1),
    "uint32": (0, 2**32 - 2),
    "int32": (-(2**31), 2**31 - 1),
    "uint64": (0, 2**64 - 2),
    "int64": (-(2**63), 2**63 - 1),
}


@given(st.data(), st.sampled_from(sorted(INT_TYPES)), st.sampled_from(ORDERS))
def test_integer_round_trip(data: st.DataObject, type_: str, order: str) -> None:
    lo, hi = INT_TYPES[type_]
    raw = data.draw(st.integers(lo, hi))
    r = reg(type_, order=order)
    words = encode(r, raw)
    bits = gp.TYPES[type_][0] * 16
    assert words == wire_words(order, (raw & ((1 << bits) - 1)).to_bytes(bits // 8, "big"))
    assert decode(r, words) == raw
    scaled = reg(type_, order=order, scale="0.01")
    value = Decimal(raw) * Decimal("0.01")
    assert decode(scaled, encode(scaled, value)) == value


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(ORDERS))
def test_float32_round_trip(value: float, order: str) -> None:
    r = reg("float32", order=order)
    words = encode(r, value)
    assert words == wire_words(order, struct.pack(">f", value))
    decoded = decode(r, words)
    assert decoded is not None
    # the shortest decimal converts back to the very same float32
    assert struct.unpack(">f", struct.pack(">f", float(decoded)))[0] == value


@given(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(ORDERS))
def test_float64_round_trip(value: float, order: str) -> None:
    r = reg("float64", order=order)
    words = encode(r, value)
    assert words == wire_words(order, struct.pack(">d", value))
    decoded = decode(r, words)
    assert decoded is not None and float(decoded) == value


@given(st.integers(0, 99_999_999), st.sampled_from(ORDERS))
def test_bcd32_round_trip(value: int, order: str) -> None:
    r = reg("bcd32", order=order)
    assert decode(r, encode(r, value)) == value


# --------------------------------------------------------------------------- malformed profiles

MINIMAL = """\
manufacturer = "Acme"
model = "M1"
source = "Acme M1 Modbus register map, rev. 1"
byte_order = "ABCD"
max_registers_per_request = 10
response_time_ms = 100

[[registers]]
name = "import_total"
quantity = "energy_import"
zone = "T"
function = 4
address = 0
type = "uint32"
scale = 0.01
unit = "kWh"

[[registers]]
name = "voltage"
quantity = "voltage"
function = 4
address = 4
type = "uint16"
scale = 0.1
unit = "V"

[[test_vectors]]
register = "import_total"
words = [0x0001, 0xE240]
value = 1234.56

[[test_vectors]]
register = "import_total"
words = [0xFFFF, 0xFFFF]
value = "missing"
"""


def write(directory: Path, stem: str, text: str) -> Path:
    path = directory / f"{stem}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_big_integer_vector_values_stay_exact(tmp_path: Path) -> None:
    text = MINIMAL.replace('type = "uint32"', 'type = "uint64"').replace("scale = 0.01\n", "")
    text = text.replace("words = [0x0001, 0xE240]", "words = [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE]")
    text = text.replace("value = 1234.56", "value = 18446744073709551614")
    text = text.replace("words = [0xFFFF, 0xFFFF]", "words = [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]")
    path = write(tmp_path, "acme_m1", text)
    assert load_profile(path).test_vectors[0].expected == 2**64 - 2
    assert check_profiles(tmp_path) == ([load_profile(path)], [])


def test_minimal_profile_loads(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, "acme_m1", MINIMAL))
    assert profile.id == "acme_m1"
    assert profile.byte_order == "ABCD"
    assert profile.register("voltage").scale == Decimal("0.1")
    loaded, errors = check_profiles(tmp_path)
    assert errors == [] and [p.id for p in loaded] == ["acme_m1"]


BAD_PROFILES = [
    ("bad_toml", MINIMAL.replace('model = "M1"', "model = M1"), "(toml)"),
    ("unknown_top_key", "colour = 'red'\n" + MINIMAL, "colour"),
    ("unknown_vector_key", MINIMAL + "comment = 'x'\n", "test_vectors[1].comment"),
    ("unknown_register_key", MINIMAL.replace("address = 4", "adress = 4"), "registers[1].adress"),
    ("wrong_type_name", MINIMAL.replace('type = "uint16"', 'type = "uint24"'), "registers[1].type"),
    (
        "function_5",
        MINIMAL.replace("function = 4\naddress = 4", "function = 5\naddress = 4"),
        "registers[1].function",
    ),
    ("missing_source", MINIMAL.replace('source = "Acme M1 Modbus register map, rev. 1"\n', ""), "source"),
    (
        "empty_source",
        MINIMAL.replace('source = "Acme M1 Modbus register map, rev. 1"', 'source = ""'),
        "source",
    ),
    ("overlap", MINIMAL.replace("address = 4", "address = 1"), "registers[1].address"),
    ("bad_byte_order", MINIMAL.replace('byte_order = "ABCD"', 'byte_order = "BACD"'), "byte_order"),
    ("id_mismatch", 'id = "someone_else"\n' + MINIMAL, "id"),
    ("string_for_int", MINIMAL.replace("address = 4", 'address = "4"'), "registers[1].address"),
    ("energy_without_zone", MINIMAL.replace('zone = "T"\n', ""), "registers[0].zone"),
    (
        "zone_on_voltage",
        MINIMAL.replace('quantity = "voltage"', 'quantity = "voltage"\nzone = "T1"'),
        "registers[1].zone",
    ),
    ("bad_zone", MINIMAL.replace('zone = "T"', 'zone = "T9"'), "registers[0].zone"),
    (
        "duplicate_series",
        MINIMAL.replace('quantity = "voltage"', 'quantity = "energy_import"\nzone = "T"'),
        "registers[1].zone",
    ),
    ("duplicate_name", MINIMAL.replace('name = "voltage"', 'name = "import_total"'), "registers[1].name"),
    (
        "vector_unknown_register",
        MINIMAL.replace('register = "import_total"', 'register = "nope"', 1),
        "test_vectors[0].register",
    ),
    (
        "vector_word_count",
        MINIMAL.replace("words = [0x0001, 0xE240]", "words = [0x0001]"),
        "test_vectors[0].words",
    ),
    (
        "vector_word_range",
        MINIMAL.replace("words = [0x0001, 0xE240]", "words = [0x0001, 0x1E240]"),
        "test_vectors[0].words[1]",
    ),
    ("no_missing_vector", MINIMAL.replace('value = "missing"', "value = 0"), "test_vectors"),
    ("bad_vector_value", MINIMAL.replace('value = "missing"', 'value = "n/a"'), "test_vectors[1].value"),
    (
        "nan_value_too_wide",
        MINIMAL.replace('unit = "V"', 'unit = "V"\nnan_values = [0x10000]'),
        "registers[1].nan_values[0]",
    ),
    (
        "register_too_wide",
        MINIMAL.replace("max_registers_per_request = 10", "max_registers_per_request = 1"),
        "registers[0].type",
    ),
    (
        "too_many_words",
        MINIMAL.replace("max_registers_per_request = 10", "max_registers_per_request = 126"),
        "max_registers_per_request",
    ),
    ("no_registers", MINIMAL.split("[[registers]]")[0], "registers"),
]


@pytest.mark.parametrize(("stem", "text", "key"), BAD_PROFILES, ids=[b[0] for b in BAD_PROFILES])
def test_malformed_profile_names_file_and_key(tmp_path: Path, stem: str, text: str, key: str) -> None:
    path = write(tmp_path, stem, text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    err = info.value
    assert err.path == str(path)
    assert key in [k for k, _ in err.problems]
    assert f"{path}: {key}: " in str(err)
    # the same problem shows up as a human-readable string in check_profiles
    loaded, errors = check_profiles(tmp_path)
    assert loaded == []
    assert any(e.startswith(f"{path}: {key}: ") for e in errors)


def test_failing_test_vector_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "acme_m1", MINIMAL.replace("value = 1234.56", "value = 1234.57"))
    load_profile(path)  # the shape is fine ...
    loaded, errors = check_profiles(tmp_path)  # ... but the vector does not decode as claimed
    assert loaded == []
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}: test_vectors[0]: ")
    assert "1234.56" in errors[0] and "1234.57" in errors[0]


def test_failing_missing_vector_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "acme_m1", MINIMAL.replace("words = [0xFFFF, 0xFFFF]", "words = [0x0000, 0x0001]"))
    _, errors = check_profiles(tmp_path)
    assert errors and errors[0].startswith(f"{path}: test_vectors[1]: ")
    assert "expected missing" in errors[0]


def test_duplicate_id_across_folders(tmp_path: Path) -> None:
    first = write(tmp_path / "acme", "acme_m1", MINIMAL)
    second = write(tmp_path / "vendor_copy", "acme_m1", MINIMAL)
    with pytest.raises(ProfileError) as info:
        load_profiles(tmp_path)
    assert info.value.key == "id"
    assert str(second) in str(info.value) and str(first) in str(info.value)
    loaded, errors = check_profiles(tmp_path)
    assert [p.id for p in loaded] == ["acme_m1"]
    assert len(errors) == 1 and errors[0].startswith(f"{second}: id: duplicate profile id")


def test_bad_file_does_not_hide_good_ones(tmp_path: Path) -> None:
    write(tmp_path, "acme_m1", MINIMAL)
    bad = write(
        tmp_path, "acme_m2", MINIMAL.replace("function = 4\naddress = 4", "function = 5\naddress = 4")
    )
    loaded, errors = check_profiles(tmp_path)
    assert [p.id for p in loaded] == ["acme_m1"]
    assert errors == [f"{bad}: registers[1].function: Input should be 3 or 4 (got 5)"]


def test_check_profiles_on_empty_or_missing_directory(tmp_path: Path) -> None:
    assert check_profiles(tmp_path)[1]
    assert check_profiles(tmp_path / "nope")[1]
    with pytest.raises(ProfileError):
        load_profiles(tmp_path / "nope")


# --------------------------------------------------------------------------- read planning


def test_plan_reads_merges_adjacent_registers() -> None:
    sdm = load_profile(PROFILE_DIR / "eastron_sdm120.toml")
    plan = plan_reads(sdm)
    assert [(b.function, b.address, b.count) for b in plan] == [
        (4, 0x0000, 14),
        (4, 0x0046, 6),
        (4, 0x0156, 2),
    ]
    assert [r.name for r in plan[1].registers] == ["frequency", "import_total", "export_total"]


def test_plan_reads_respects_limit_gap_and_function() -> None:
    regs = [
        reg("uint32", name="a", address=0),
        reg("uint32", name="b", address=2),
        reg("uint32", name="c", address=4),
        reg("uint16", name="d", address=10),
        reg("uint16", name="e", address=10, function=3),
    ]
    profile = make_profile(regs, max_words=4, max_gap=8)
    plan = plan_reads(profile)
    # c..d would bridge 4 unused words but span 7 > 4 words, so d starts its own request
    assert [(b.function, b.address, b.count) for b in plan] == [(4, 0, 4), (4, 4, 2), (3, 10, 1), (4, 10, 1)]
    # with room for 11 words the gap is bridged
    assert [(b.function, b.address, b.count) for b in plan_reads(make_profile(regs, max_words=11))] == [
        (4, 0, 11),
        (3, 10, 1),
    ]
    no_gap = plan_reads(make_profile(regs, max_words=40, max_gap=0))
    assert [(b.function, b.address, b.count) for b in no_gap] == [(4, 0, 6), (3, 10, 1), (4, 10, 1)]
    subset = plan_reads(make_profile(regs), [regs[2]])
    assert [(b.address, b.count) for b in subset] == [(4, 2)]


def test_split_block_decodes_each_register() -> None:
    abb = load_profile(PROFILE_DIR / "abb_b23.toml")
    block = next(b for b in plan_reads(abb) if b.address == 0x5000)
    words = encode(abb.register("import_total"), Decimal("1234567.89")) + [0xFFFF] * 4
    assert split_block(block, words) == {"import_total": Decimal("1234567.89"), "export_total": None}
    with pytest.raises(ValueError):
        split_block(block, words[:-1])


@st.composite
def layouts(draw: st.DrawFn) -> tuple[list[Register], int, int]:
    max_words = draw(st.integers(4, 125))
    max_gap = draw(st.integers(0, 12))
    specs = draw(
        st.lists(
            st.tuples(st.sampled_from([3, 4]), st.integers(0, 20), st.sampled_from(sorted(gp.TYPES))),
            max_size=40,
        )
    )
    next_free = {3: draw(st.integers(0, 60_000)), 4: draw(st.integers(0, 60_000))}
    regs = []
    for i, (function, gap, type_) in enumerate(specs):
        address = next_free[function] + gap
        r = reg(type_, name=f"r{i}", function=function, address=address)
        next_free[function] = r.end
        regs.append(r)
    return regs, max_words, max_gap


@settings(max_examples=300)
@given(layouts())
def test_plan_reads_properties(layout: tuple[list[Register], int, int]) -> None:
    regs, max_words, max_gap = layout
    plan = plan_reads(make_profile(regs, max_words=max_words, max_gap=max_gap))
    # every register is read exactly once
    covered = [r.name for b in plan for r in b.registers]
    assert sorted(covered) == sorted(r.name for r in regs)
    # sorted by address
    assert plan == sorted(plan, key=lambda b: (b.address, b.function))
    block_of: dict[str, ReadBlock] = {}
    for b in plan:
        assert 1 <= b.count <= max_words
        assert all(r.function == b.function for r in b.registers)
        assert b.address == min(r.address for r in b.registers)
        assert b.end == max(r.end for r in b.registers)
        members = sorted(b.registers, key=lambda r: r.address)
        for left, right in zip(members, members[1:], strict=False):
            assert right.address - left.end <= max_gap
        for r in b.registers:
            block_of[r.name] = b
        # every register decodes from its slice of the block reply
        words = [0] * b.count
        for r in b.registers:
            offset = r.address - b.address
            words[offset : offset + r.word_count] = encode(r, 1)
        assert set(split_block(b, words).values()) == {Decimal(1)}
    # neighbours end up in different requests only when merging was not allowed
    for function in (3, 4):
        ordered = sorted((r for r in regs if r.function == function), key=lambda r: r.address)
        for left, right in zip(ordered, ordered[1:], strict=False):
            first = block_of[left.name]
            if block_of[right.name] is not first:
                assert right.address - left.end > max_gap or right.end - first.address > max_words
