"""Firmware profiles: Modbus register maps of meter models, kept as data (TOML), not code.

One TOML file per meter model (and per firmware range where the map differs) lives in
``adapters/meters/firmware_profiles/``, package data shipped in the wheel (sub-folders are
allowed, e.g. one per manufacturer).  The profile id is the file stem:
``firmware_profiles/eastron_sdm120.toml`` -> ``eastron_sdm120``.  Adding a
model is a data change: write the file, run ``meter-gateway profiles check`` (which calls
:func:`check_profiles`), no code changes.

This package is pure Python (``struct`` + ``decimal``, no pymodbus), so that a profile can be
checked without a bus: ``model`` holds the records, ``loading`` the TOML schema, ``codec`` the
words <-> values conversion, ``planning`` the read requests and ``checking`` the command's test
vectors and descriptions.  The poller reads the words that :func:`plan_reads` asks for and hands
them back to :func:`split_block` / :func:`decode`.

Schema (``extra`` keys are rejected everywhere; ``?`` marks an optional key)::

    id = "eastron_sdm120"          # ? must equal the file stem when given
    manufacturer = "Eastron"
    model = "SDM120-Modbus"
    source = "..."                 # REQUIRED: title/version of the manufacturer document
    firmware = ">=1.0"             # ? firmware range the map applies to (free text)
    notes = "..."                  # ? free text shown by describe(): caveats, unverified items
    byte_order = "ABCD"            # default for every register: ABCD | CDAB | BADC | DCBA
    max_registers_per_request = 40 # 1..125 words per read request (FC3/FC4 limit is 125)
    max_gap_words = 8              # ? unused words that plan_reads may bridge (default 8; 0 for
                                   #   meters that reject reads spanning unmapped addresses)
    response_time_ms = 100         # worst-case reply time of the meter, for timeouts
    billed_quantities = ["energy_import", "energy_total", "energy_net"]
                                   # ? which counter of a zone is billed: the first one mapped
                                   #   for the zone (this list is the default)

    [identification]               # ? registers identifying the unit (name -> register)
    serial = { function = 3, address = 0xFC00, type = "uint32" }
                                   # keys: function, address, type, byte_order?, scale?,
                                   #       unit?, nan_values?

    [[registers]]                  # at least one
    name = "import_total"          # [a-z][a-z0-9_]*, unique in the profile
    quantity = "energy_import"     # see QUANTITIES
    zone = "T"                     # energy quantities only, required there: T T1 T2 T3 T4
    function = 4                   # 3 (holding) or 4 (input)
    address = 0x0048               # protocol (0-based) address, as sent on the wire
    type = "float32"               # see TYPES
    scale = 1.0                    # ? value = raw * scale (default 1)
    unit = "kWh"                   # ? unit of the scaled value (energy: Wh, kWh, MWh; none = kWh)
    byte_order = "ABCD"            # ? per-register override
    nan_values = [0x7FFFFFFF]      # ? extra raw "no value" sentinels (see below)

    [[test_vectors]]               # at least one numeric vector and one "missing" vector
    register = "import_total"      # a register or identification name
    words = [0x4640, 0xE666]       # register words exactly as read from the wire
    value = 12345.6                # expected decoded value, or "missing"
                                   # (a decimal string such as "12345.6" is accepted too)

Byte/word orders (bytes of the value named A B C D ..., A most significant):

    ======  =================================  ============  ========================
    order   meaning                            32-bit words  64-bit words
    ======  =================================  ============  ========================
    ABCD    big-endian, high word first        AB CD         AB CD EF GH
    CDAB    word-swapped: low word first       CD AB         GH EF CD AB
    BADC    byte-swapped inside each word      BA DC         BA DC FE HG
    DCBA    little-endian                      DC BA         HG FE DC BA
    ======  =================================  ============  ========================

For 16-bit types ABCD == CDAB and BADC == DCBA.  (pymodbus' helpers only swap words, which
is why decoding lives here.)

"No value" sentinels -- :func:`decode` returns ``None`` for: NaN and +/-inf (float types);
all-ones (0xFFFF...) for unsigned integer types; a BCD nibble above 9; any raw value listed
in ``nan_values``.  ``nan_values`` are raw integers compared with the bit pattern of the
register (a negative number is taken as its two's complement, so ``-1`` and ``0xFFFF`` are
the same for a 16-bit register).

Exact values: results are :class:`~decimal.Decimal`.  Integers and BCD are exact
(``123456789 * 0.01`` -> ``1234567.89``; the scale is taken from its TOML text, so 0.01 is
exactly 0.01).  Floats are converted through the *shortest* decimal string that gives back
the same float -- for float32 the shortest string that round-trips through float32 -- so a
meter showing 12345.6 (float32 0x4640E666 = 12345.599609375) yields ``Decimal("12345.6")``,
not ``12345.599609375``; float64 uses ``Decimal(repr(value))``.
"""

from __future__ import annotations

from adapters.meters.profiles.checking import check_profiles, describe, run_vectors
from adapters.meters.profiles.codec import decode, encode
from adapters.meters.profiles.loading import DEFAULT_DIR, load_profile, load_profiles
from adapters.meters.profiles.model import (
    BYTE_ORDERS,
    DEFAULT_MAX_GAP_WORDS,
    ENERGY_QUANTITIES,
    QUANTITIES,
    TYPES,
    ZONES,
    Profile,
    ProfileError,
    ReadBlock,
    Register,
    Vector,
)
from adapters.meters.profiles.planning import plan_reads, split_block

__all__ = [
    "DEFAULT_DIR",
    "BYTE_ORDERS",
    "DEFAULT_MAX_GAP_WORDS",
    "ENERGY_QUANTITIES",
    "QUANTITIES",
    "TYPES",
    "ZONES",
    "Profile",
    "ProfileError",
    "ReadBlock",
    "Register",
    "Vector",
    "check_profiles",
    "decode",
    "describe",
    "encode",
    "load_profile",
    "load_profiles",
    "plan_reads",
    "run_vectors",
    "split_block",
]
