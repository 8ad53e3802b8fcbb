"""Charts of noised values as inline SVG, drawn on the server (no JavaScript).

Pure functions of the values: the page embeds the returned markup. Bars (one group key, or an
aggregate job's outputs) carry each value's 95 % bound as a whisker, so a reader sees at once
which differences the noise could explain; two group keys make a heat map, one per output.

No label may run outside its SVG (the browser would clip it): every text is either sized into
the box or cut with an ellipsis, the whole text kept in a ``<title>`` tooltip.
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


WIDTH, LABEL_WIDTH, ROW = 640, 150, 22
#: Most bars one chart draws; the table below it has every cell.
MAX_BARS = 60
#: Most rows and columns one heat map draws, and its widest: two side by side on a desktop.
MAX_HEAT, HEAT_WIDTH = 100, 540
_NARROW, _WIDE = set("ijl.,:;|!'() It[]f"), set("mwMW@%")


def text_width(text: str, size: float, bold: bool = False) -> float:
    """A generous estimate of the text's width in px in a sans-serif face (measured against
    Chromium's): never less than what the browser draws, so a label judged to fit does fit."""
    em = sum(_em(c) for c in text) * (1.15 if bold else 1.0)
    return em * size


def _em(char: str) -> float:
    if not char.isascii():
        return 1.0  # dashes, arrows, accented letters from a fallback face: up to 1 em
    if char in _NARROW:
        return 0.34
    if char in _WIDE:
        return 0.95
    return 0.72 if char.isupper() else 0.64 if char.isdigit() else 0.62


def fit(text: str, width: float, size: float, bold: bool = False) -> str:
    """The text, or its longest start that fits in ``width`` px followed by an ellipsis."""
    if text_width(text, size, bold) <= width:
        return text
    while text and text_width(text + "…", size, bold) > width:
        text = text[:-1]
    return text + "…" if text else ""


def label(x: float, y: float, text: str, width: float, size: float = 12, **attrs: str) -> str:
    """A ``<text>`` cut to ``width`` px; a cut one keeps the whole text as its tooltip. No
    room at all: no text (the mark it labels has its own tooltip)."""
    shown = fit(text, width, size, attrs.get("font_weight") == "bold")
    if not shown:
        return ""
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    tip = f"<title>{escape(text)}</title>" if shown != text else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size:g}"{extra}>{tip}{escape(shown)}</text>'


def _svg(title: str, width: float, height: float) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" class="chart">'
        f"<title>{escape(title)}</title>" + label(4, 16, title, width - 8, 13, font_weight="bold")
    )


def bar_chart(title: str, bars: list[Bar]) -> str:
    """Horizontal bars from a zero line, with ±error whiskers; negative values go left."""
    if not bars:
        return ""
    lows = [min(0.0, b.value - b.error) for b in bars]
    highs = [max(0.0, b.value + b.error) for b in bars]
    low, high = min(lows), max(highs)
    span = (high - low) or 1.0
    value_room = max(text_width(f"{b.value:g}", 11) for b in bars) + 10
    area = WIDTH - LABEL_WIDTH - value_room

    def x(value: float) -> float:
        return LABEL_WIDTH + (value - low) / span * area

    height = 30 + ROW * len(bars) + 10
    parts = [
        _svg(title, WIDTH, height),
        f'<line x1="{x(0):.1f}" y1="24" x2="{x(0):.1f}" y2="{height - 8}" stroke="#888"/>',
    ]
    for index, bar in enumerate(bars):
        top = 28 + index * ROW
        left, right = sorted((x(0), x(bar.value)))
        parts.append(
            label(LABEL_WIDTH - 6, top + 14, bar.label, LABEL_WIDTH - 10, text_anchor="end")
            + f'<rect x="{left:.1f}" y="{top + 3}" width="{max(right - left, 0.5):.1f}" '
            f'height="{ROW - 8}" fill="#3b6ea8"><title>{escape(bar.label)}: '
            f"{bar.value:g} ± {bar.error:g}</title></rect>"
        )
        if bar.error > 0:
            mid = top + ROW / 2 - 1
            parts.append(
                f'<line x1="{x(bar.value - bar.error):.1f}" y1="{mid}" '
                f'x2="{x(bar.value + bar.error):.1f}" y2="{mid}" stroke="#111" stroke-width="1"/>'
            )
        at = x(max(bar.value + bar.error, 0)) + 4  # right of the whisker or the zero line
        parts.append(label(at, top + 14, f"{bar.value + 0.0:g}", WIDTH - at, 11, fill="#333"))
    parts.append("</svg>")
    return "".join(parts)


def _shade(share: float) -> str:
    """From near-white (lowest) to the header's dark blue (highest)."""
    low, high = (244, 248, 252), (31, 58, 95)
    r, g, b = (round(a + (z - a) * share) for a, z in zip(low, high, strict=True))
    return f"rgb({r},{g},{b})"


def heat_map(
    title: str,
    keys: tuple[str, str],
    cells: dict[tuple[object, object], ReleasedOut],
) -> str:
    """Rows are the first key's values, columns the second's; each cell's shade its value
    (its exact value, bound and keys in its tooltip). A legend gives the shades' range."""
    if not cells:
        return ""
    rows = list(dict.fromkeys(r for r, _ in cells))[:MAX_HEAT]
    cols = list(dict.fromkeys(c for _, c in cells))[:MAX_HEAT]
    values = [cell.value for cell in cells.values()]
    low, high = min(values), max(values)
    left = max(36.0, min(LABEL_WIDTH, max(text_width(str(r), 11) for r in rows) + 12))
    cell_w = max(5.0, min(28.0, (HEAT_WIDTH - left - 10) / len(cols)))
    cell_h = 16.0 if len(rows) <= 40 else 10.0
    width = left + cell_w * len(cols) + 10
    width = max(width, 320.0)
    top = 52.0
    height = top + cell_h * len(rows) + 44
    parts = [
        _svg(title, width, height),
        label(4, 34, f"{keys[0]} ↓  {keys[1]} →", width - 8, 11, fill="#333"),
    ]
    # Column labels: every n-th, so that each has room for itself.
    widest = max(text_width(str(c), 10) for c in cols) + 4
    every = max(1, int(-(-widest // cell_w)))
    for index in range(0, len(cols), every):
        x = left + index * cell_w
        room = min(cell_w * every, width - x - 2)
        parts.append(label(x + 1, top - 4, str(cols[index]), room, 10, fill="#333"))
    for r_index, row in enumerate(rows):
        y = top + r_index * cell_h
        if cell_h >= 14 or r_index % 2 == 0:
            parts.append(label(left - 6, y + cell_h - 4, str(row), left - 10, 11,
                               text_anchor="end"))  # fmt: skip
        for c_index, col in enumerate(cols):
            cell = cells.get((row, col))
            if cell is None:
                continue
            share = (cell.value - low) / ((high - low) or 1.0)
            tip = f"{keys[0]}={row}, {keys[1]}={col}: {cell.value:g} ± {cell.error_bound_95:.4g}"
            parts.append(
                f'<rect x="{left + c_index * cell_w:.1f}" y="{y:.1f}" width="{cell_w:.1f}" '
                f'height="{cell_h:.1f}" fill="{_shade(share)}" stroke="#fff" stroke-width="0.5">'
                f"<title>{escape(tip)}</title></rect>"
            )
    legend_y = top + cell_h * len(rows) + 14
    steps = 10
    for step in range(steps):
        parts.append(
            f'<rect x="{left + step * 12:.1f}" y="{legend_y:.1f}" width="12" height="10" '
            f'fill="{_shade(step / (steps - 1))}"/>'
        )
    parts.append(label(left - 4, legend_y + 9, f"{low:g}", left - 6, 10, text_anchor="end"))
    after = left + steps * 12 + 4
    parts.append(label(after, legend_y + 9, f"{high:g}", width - after - 2, 10))
    parts.append("</svg>")
    return "".join(parts)


def charts_for(cells: Sequence[ReleasedOut], what: str = "released") -> list[str]:
    """The cells drawn: one chart of every output for an aggregate job; per output of a query,
    bars for one group key, a heat map for two. Three keys or more get none (the table has
    them). ``what`` names the values in the titles (released, awaiting review...)."""
    if not cells:
        return []
    keyed = [c for c in cells if c.keys]
    if not keyed:
        bars = [Bar(c.name, c.value, c.error_bound_95) for c in cells]
        return [bar_chart(f"{what} outputs (whiskers: 95 % error bound)", bars[:MAX_BARS])]
    widths = {len(c.keys or {}) for c in keyed}
    if len(widths) != 1 or widths.pop() > 2:
        return []
    charts = []
    for name in dict.fromkeys(c.name for c in keyed):
        mine = [c for c in keyed if c.name == name]
        names = list(mine[0].keys or {})
        if len(names) == 1:
            bars = [Bar(str(next(iter((c.keys or {}).values()))), c.value, c.error_bound_95)
                    for c in mine]  # fmt: skip
            shown = "" if len(bars) <= MAX_BARS else f", the first {MAX_BARS} of {len(bars)}"
            title = f"{name}, {what} (whiskers: 95 % error bound{shown})"
            charts.append(bar_chart(title, bars[:MAX_BARS]))
        else:
            grid = {(k[names[0]], k[names[1]]): c for c in mine if (k := c.keys or {})}
            charts.append(heat_map(f"{name}, {what}", (names[0], names[1]), grid))
    return charts
