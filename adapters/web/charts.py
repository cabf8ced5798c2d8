"""Monthly consumption as an SVG bar chart drawn on the server: readable without JavaScript.

The chart carries its own title and a text description (for screen readers), a value above
every bar, and a `<title>` per bar; the page shows the same figures in a table beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from html import escape

from gateway.validation.explain import num

WIDTH, HEIGHT = 480, 280
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 34, 52
# Distinguishable in grey-scale and for the common colour-vision deficiencies.
COLOURS = ("#1f5fa8", "#e08a00", "#3c8d3c")


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is at least `value` (axis maximum)."""
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        top = step * 10**exp
        if top >= value:
            return float(top)
    return float(10 ** (exp + 1))  # pragma: no cover


def bar_chart(
    categories: Sequence[str],
    series: Mapping[str, Sequence[Decimal | None]],
    title: str,
    unit: str = "кВт·ч",
    label: Callable[[str], str] = str,
    chart_id: str = "chart",
) -> str:
    """Grouped bars: one group per category (month), one bar per series (tariff zone)."""
    values = [float(v) for vs in series.values() for v in vs if v is not None]
    top = nice_ceiling(max(values, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group_w = plot_w / max(len(categories), 1)
    bar_w = min(48.0, group_w * 0.8 / max(len(series), 1))
    desc = "; ".join(
        f"{label(cat)}: " + ", ".join(_value_text(name, vs[i], unit) for name, vs in series.items())
        for i, cat in enumerate(categories)
    )
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" class="chart" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(desc or "нет данных")}</desc>',
    ]
    for k in range(5):  # grid lines and the axis labels
        tick = top * k / 4
        y = TOP + plot_h - plot_h * k / 4
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            f'stroke="{"#666" if k == 0 else "#ddd"}" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="15" fill="#333">'
            f"{escape(num(Decimal(str(round(tick, 2)))))}</text>"
        )
    out.append(
        f'<text x="{LEFT - 6}" y="{TOP - 12}" text-anchor="end" font-size="15" fill="#333">{escape(unit)}</text>'
    )
    for i, cat in enumerate(categories):
        gx = LEFT + group_w * i + (group_w - bar_w * len(series)) / 2
        for j, (name, vs) in enumerate(series.items()):
            value = vs[i]
            if value is None:
                continue
            v = Decimal(value)
            h = plot_h * float(v) / top
            x = gx + bar_w * j
            y = TOP + plot_h - h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[j % len(COLOURS)]}"><title>{escape(f"{label(cat)}, {name}: {num(v)} {unit}")}'
                "</title></rect>"
            )
            if bar_w >= 34:  # room for the figure above the bar; narrower ones say it in <title>
                out.append(
                    f'<text x="{x + (bar_w - 2) / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" font-size="14" '
                    f'fill="#111">{escape(num(v))}</text>'
                )
        out.append(
            f'<text x="{LEFT + group_w * i + group_w / 2:.1f}" y="{HEIGHT - BOTTOM + 18}" '
            f'text-anchor="middle" font-size="{15 if group_w >= 56 else 11}" fill="#111">{escape(label(cat))}</text>'
        )
    if len(series) > 1:  # legend
        for j, name in enumerate(series):
            x = LEFT + j * 150
            out.append(
                f'<rect x="{x}" y="{HEIGHT - 18}" width="14" height="14" fill="{COLOURS[j % len(COLOURS)]}"/>'
            )
            out.append(
                f'<text x="{x + 16}" y="{HEIGHT - 8}" font-size="15" fill="#111">{escape(name)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def _value_text(name: str, value: Decimal | None, unit: str) -> str:
    return f"{name} нет данных" if value is None else f"{name} {num(value)} {unit}"
