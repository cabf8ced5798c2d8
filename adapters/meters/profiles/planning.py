"""Which registers to read in which requests (`plan_reads`), and splitting a read block's words back
into named values (`split_block`)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from adapters.meters.profiles.codec import decode
from adapters.meters.profiles.model import Profile, ReadBlock, Register

# --------------------------------------------------------------------------- read planning


def plan_reads(
    profile: Profile,
    registers: Sequence[Register] | None = None,
    *,
    max_gap: int | None = None,
) -> list[ReadBlock]:
    """Merge registers into as few read requests as fit the profile's limits, sorted by address.

    Registers with the same function code are read together when the unused words between
    them do not exceed ``max_gap`` (default: the profile's ``max_gap_words``) and the request
    stays within ``max_registers_per_request`` words.
    """
    regs = list(profile.registers if registers is None else registers)
    gap = profile.max_gap_words if max_gap is None else max_gap
    limit = profile.max_registers_per_request
    unique: dict[tuple[str, int, int], Register] = {}
    for reg in regs:
        if reg.word_count > limit:
            raise ValueError(f"{reg.name}: {reg.word_count} words exceed max_registers_per_request={limit}")
        unique.setdefault((reg.name, reg.function, reg.address), reg)
    blocks: list[ReadBlock] = []
    by_function: dict[int, list[Register]] = {}
    for reg in unique.values():
        by_function.setdefault(reg.function, []).append(reg)
    for function, items in by_function.items():
        items.sort(key=lambda r: (r.address, r.end))
        start = items[0].address
        end = items[0].end
        members = [items[0]]
        for reg in items[1:]:
            new_end = max(end, reg.end)
            if reg.address - end <= gap and new_end - start <= limit:
                end = new_end
                members.append(reg)
                continue
            blocks.append(ReadBlock(function, start, end - start, tuple(members)))
            start, end, members = reg.address, reg.end, [reg]
        blocks.append(ReadBlock(function, start, end - start, tuple(members)))
    blocks.sort(key=lambda b: (b.address, b.function))
    return blocks


def split_block(block: ReadBlock, words: Sequence[int]) -> dict[str, Decimal | None]:
    """Decode every register of a block from the block's reply words (name -> value)."""
    if len(words) != block.count:
        raise ValueError(
            f"block {block.function}:{block.address:#06x} expects {block.count} words, got {len(words)}"
        )
    out: dict[str, Decimal | None] = {}
    for reg in block.registers:
        offset = reg.address - block.address
        out[reg.name] = decode(reg, words[offset : offset + reg.word_count])
    return out
