"""The XML 80020 file as the АТС regulation lays it out (Приложение 11.1.1 к Положению о порядке
получения статуса субъекта оптового рынка: «Формат и регламент предоставления результатов
измерений…», XML-макет 80020), parsed from bytes that come from outside.

    <?xml version="1.0" encoding="windows-1251"?>
    <message class="80020" version="2" number="1056">
      <datetime>
        <timestamp>20261117040922</timestamp>         when the file was made
        <daylightsavingtime>0</daylightsavingtime>
        <day>20261116</day>                           the day the values are of
      </datetime>
      <sender><inn>5257072937</inn><name>...</name></sender>
      <area>
        <inn>1328903069</inn><name>...</name>
        <measuringpoint code="131150001113003" name="ТГ-4">
          <measuringchannel code="01" desc="активная энергия, приём">
            <period start="0000" end="0030"><value status="0">48845</value></period>
            ...

Each period's value is the energy of the channel over [start, end) of `day` (end "0000" is the
day's end), in kWh for active (01 import, 02 export) and kvarh for reactive (03, 04) channels;
`status` marks the value's quality (0: a commercial measurement). The 80040 layout is read the
same way (its other elements are ignored). Parsed with defusedxml: no DTDs, no entities.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

CLASSES = ("80020", "80040")
_HHMM = re.compile(r"^([01][0-9]|2[0-3])([0-5][0-9])$")


class FileProblem(ValueError):
    """A file that is not an 80020/80040 message at all (refused whole)."""


@dataclass(frozen=True, slots=True)
class Period:
    start: str  # "HHMM" as in the file
    end: str
    value: str | None  # the <value> text as in the file (None: no <value>)
    status: str | None

    def bounds(self, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """[start, end) as aware times; ValueError for times that are no HHMM or end before they start."""
        start, end = _hhmm(self.start), _hhmm(self.end)
        begin = datetime.combine(day, start, zone)
        finish = datetime.combine(day + timedelta(days=1) if end == time(0) else day, end, zone)
        if finish <= begin:
            raise ValueError(f"period {self.start}-{self.end} ends before it starts")
        return begin, finish


@dataclass(frozen=True, slots=True)
class Channel:
    code: str
    desc: str
    periods: tuple[Period, ...]


@dataclass(frozen=True, slots=True)
class Point:
    code: str
    name: str
    channels: tuple[Channel, ...]


@dataclass(frozen=True, slots=True)
class Message:
    message_class: str  # "80020" or "80040"
    number: str
    timestamp: str
    day: date
    sender_inn: str
    sender_name: str
    points: tuple[Point, ...]  # of every area

    @property
    def values(self) -> int:
        return sum(len(c.periods) for p in self.points for c in p.channels)


def _hhmm(text: str) -> time:
    m = _HHMM.match(text)
    if m is None:
        raise ValueError(f"{text!r} is no time HHMM")
    return time(int(m.group(1)), int(m.group(2)))


def _text(element: object | None) -> str:
    text = getattr(element, "text", None)
    return (text or "").strip()


def parse(data: bytes) -> Message:
    """The message in `data`; FileProblem when it is no 80020/80040 message."""
    try:
        root = fromstring(data, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        raise FileProblem(f"not an XML file that can be read: {exc}") from None
    if root.tag != "message" or root.get("class") not in CLASSES:
        raise FileProblem(
            f"not an XML {' or '.join(CLASSES)} message (root <{root.tag} class={root.get('class')!r}>)"
        )
    day_text = _text(root.find("datetime/day"))
    try:
        day = datetime.strptime(day_text, "%Y%m%d").date()
    except ValueError:
        raise FileProblem(f"<datetime><day> is no date YYYYMMDD: {day_text[:20]!r}") from None
    if not 1970 <= day.year <= 9000:  # year 1 or 9999 overflows when its periods are put in UTC
        raise FileProblem(f"<datetime><day> is out of range: {day_text[:20]!r}")
    points = []
    for area in root.findall("area"):
        for mp in area.findall("measuringpoint"):
            channels = []
            for mc in mp.findall("measuringchannel"):
                periods = []
                for period in mc.findall("period"):
                    value = period.find("value")
                    periods.append(
                        Period(
                            (period.get("start") or "").strip(),
                            (period.get("end") or "").strip(),
                            None if value is None else _text(value),
                            None if value is None else value.get("status"),
                        )
                    )
                channels.append(Channel((mc.get("code") or "").strip(), mc.get("desc") or "", tuple(periods)))
            points.append(Point((mp.get("code") or "").strip(), mp.get("name") or "", tuple(channels)))
    if not points:
        raise FileProblem("the message has no <area><measuringpoint>")
    return Message(
        message_class=str(root.get("class")),
        number=(root.get("number") or "").strip()[:40],
        timestamp=_text(root.find("datetime/timestamp"))[:14],
        day=day,
        sender_inn=_text(root.find("sender/inn"))[:12],
        sender_name=_text(root.find("sender/name"))[:200],
        points=tuple(points),
    )
