"""Bar charts of released values as inline SVG, drawn on the server (no JavaScript).

Pure functions of the values: the page embeds the returned markup. Error bars show each
value's 95 % bound, so a reader sees at once which differences the noise could explain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from api.schemas import ReleasedOut


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    error: float = 0.0


WIDTH, BAR_AREA, LABEL_WIDTH, ROW = 640, 420, 150, 22


def bar_chart(title: str, bars: list[Bar]) -> str:
    """Horizontal bars from a zero line, with ±error whiskers; negative values go left."""
    if not bars:
        return ""
    lows = [min(0.0, b.value - b.error) for b in bars]
    highs = [max(0.0, b.value + b.error) for b in bars]
    low, high = min(lows), max(highs)
    span = (high - low) or 1.0

    def x(value: float) -> float:
        return LABEL_WIDTH + (value - low) / span * BAR_AREA

    height = 30 + ROW * len(bars) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" class="chart"><title>{escape(title)}</title>',
        f'<text x="4" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{x(0):.1f}" y1="24" x2="{x(0):.1f}" y2="{height - 8}" stroke="#888"/>',
    ]
    for index, bar in enumerate(bars):
        top = 28 + index * ROW
        left, right = sorted((x(0), x(bar.value)))
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{top + 14}" font-size="12" text-anchor="end">'
            f"{escape(bar.label)}</text>"
            f'<rect x="{left:.1f}" y="{top + 3}" width="{max(right - left, 0.5):.1f}" '
            f'height="{ROW - 8}" fill="#3b6ea8"><title>{bar.value:g} ± {bar.error:g}</title>'
            "</rect>"
        )
        if bar.error > 0:
            mid = top + ROW / 2 - 1
            parts.append(
                f'<line x1="{x(bar.value - bar.error):.1f}" y1="{mid}" '
                f'x2="{x(bar.value + bar.error):.1f}" y2="{mid}" stroke="#111" stroke-width="1"/>'
            )
        parts.append(
            f'<text x="{x(max(bar.value, 0) + bar.error) + 4:.1f}" y="{top + 14}" '
            f'font-size="11" fill="#333">{bar.value:g}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def charts_for(cells: Sequence[ReleasedOut]) -> list[str]:
    """One chart per output of a query release keyed by a single group (e.g. count per line);
    one chart of every output for an aggregate release. Multi-key tables get none."""
    if not cells:
        return []
    keyed = [(c, c.keys) for c in cells if c.keys]
    if not keyed:
        bars = [Bar(c.name, c.value, c.error_bound_95) for c in cells]
        return [bar_chart("released outputs (whiskers: 95 % error bound)", bars)]
    if any(len(keys) != 1 for _, keys in keyed):
        return []
    charts = []
    for name in dict.fromkeys(c.name for c, _ in keyed):
        bars = [
            Bar(str(next(iter(keys.values()))), c.value, c.error_bound_95)
            for c, keys in keyed if c.name == name
        ]  # fmt: skip
        charts.append(bar_chart(f"{name} (whiskers: 95 % error bound)", bars[:60]))
    return charts
