"""Free text (SMS, chat) in the intake: the door's parse taken as it is, and the reading the
registry supports chosen when the text can be read two ways.

A door parses a resident's text once (gateway/grammar.py, with the enabled formats) to tell a
command from a reading, and hands the result on in `Submission.reading`; a submission with only
`text` is parsed here. Each reading of the text becomes a candidate submission; `choose` keeps
the one whose account and meter the registry has and whose values fit that meter's zones; when
none or several do, the sender is told which part was not understood, with the example of the
enabled format. What the format dropped or did not take is told with the verdict (`notes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from gateway.formats import FormatSet
from gateway.grammar import HELP_EN, HELP_RU, ParsedReading, parse_message
from gateway.grammar_failures import ParseFailure, unclear
from gateway.model import Reason, Severity, Submission
from gateway.validation.context import MeterInfo
from gateway.validation.explain import reason


@dataclass(frozen=True, slots=True)
class TextReading:
    """What a text says, ready for the registry: candidate submissions, best first."""

    candidates: tuple[Submission, ...]
    meter_number: int | None  # "2Э": the account's second meter
    notes: tuple[Reason, ...]  # told with the verdict whatever it is
    unclear: str  # the part the candidates disagree on


def read_text(sub: Submission, formats: FormatSet) -> TextReading | Reason:
    """The submission's text as candidate submissions, or the reason it is not a reading."""
    parsed = sub.reading if sub.reading is not None else parse_message(sub.text or "", formats)
    if isinstance(parsed, ParseFailure):
        return failure_reason(parsed)
    if not isinstance(parsed, ParsedReading):  # a command reached the intake: the door answers those
        return reason("not_a_reading", Severity.REJECT, HELP_RU, HELP_EN)
    notes = []
    if parsed.cut:
        notes.append(reason("format_cut", Severity.INFO, "Учтено без дробной части", "decimals dropped"))
    if parsed.ignored:
        codes = ", ".join(parsed.ignored)
        notes.append(
            reason(
                "format_not_taken",
                Severity.INFO,
                f"Не приняты: {codes[:20]}. Только электроэнергия",
                f"not taken: {codes}; this number takes electricity readings only",
            )
        )
    return TextReading(
        tuple(_submission(sub, r) for r in parsed.readings()),
        parsed.meter_number,
        tuple(notes),
        parsed.unclear,
    )


def failure_reason(failure: ParseFailure) -> Reason:
    return reason(f"format_{failure.code}", Severity.REJECT, failure.message_ru, failure.message_en)


def _submission(sub: Submission, parsed: ParsedReading) -> Submission:
    return replace(
        sub,
        account=parsed.account or sub.account,
        meter_serial=parsed.meter_serial or sub.meter_serial,
        values={zone: value for zone, value in parsed.values if zone is not None},
        positional_values=tuple(value for zone, value in parsed.values if zone is None),
    )


def fits(meter: MeterInfo, sub: Submission) -> bool:
    """Whether the values name this meter's zones (labelled) or are as many (by position)."""
    if not meter.active:
        return False
    if sub.positional_values:
        return len(sub.positional_values) == len(meter.zones)
    return set(sub.values) == set(meter.zones)


Resolved = tuple[MeterInfo | None, Reason | None]


def choose(
    reading: TextReading, resolve: Callable[[Submission], Resolved], formats: FormatSet
) -> tuple[Submission, MeterInfo | None, Reason | None]:
    """The candidate the registry supports, its meter (or why none): one candidate is resolved
    as it is; of several, exactly one must resolve to a meter its values fit."""
    candidates: Sequence[Submission] = reading.candidates
    first = resolve(candidates[0])
    if len(candidates) == 1:
        return candidates[0], *first
    resolved = [first, *(resolve(c) for c in candidates[1:])]
    supported = [
        (sub, meter)
        for sub, (meter, _) in zip(candidates, resolved, strict=True)
        if meter and fits(meter, sub)
    ]
    if len(supported) == 1:
        return supported[0][0], supported[0][1], None
    return candidates[0], None, failure_reason(unclear(reading.unclear, formats.example))
