"""Inline SVG charts drawn on the server: stacked bars of one figure per bucket, one colour per series."""

from __future__ import annotations

from decimal import Decimal
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM = 640, 220, 56, 36
COLOURS = ("#4063d8", "#e0793b", "#2f9e6f", "#b0447a", "#7d6bd1", "#c2a21f", "#3aa0b8", "#8a8a8a")
Series = dict[str, dict[str, Decimal]]  # bucket -> series name -> value


def bar_chart(title: str, data: Series, unit: str = "") -> Markup:
    """Stacked bars of ``data`` (buckets in order); "no usage" when it is empty."""
    buckets = sorted(data)
    if not buckets:
        return Markup(f'<p class="empty" role="status">No usage in this range for {escape(title)}.</p>')
    names = sorted({name for values in data.values() for name in values})
    top = max(sum(values.values(), Decimal(0)) for values in data.values()) or Decimal(1)
    step = (WIDTH - PAD_LEFT) / len(buckets)
    bars = [_stack(index, bucket, data[bucket], names, top, step, unit) for index, bucket in enumerate(buckets)]
    legend = "".join(f'<li><span class="swatch" style="background:{_colour(names, n)}"></span>{escape(n)}</li>'
                     for n in names)
    axis = (f'<text class="tick" x="{PAD_LEFT - 6}" y="12" text-anchor="end">{escape(_short(top))}{unit}</text>'
            f'<line class="axis" x1="{PAD_LEFT}" y1="{HEIGHT - PAD_BOTTOM}" x2="{WIDTH}" '
            f'y2="{HEIGHT - PAD_BOTTOM}"/>')
    svg = (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
           f'<title>{escape(title)}</title>{axis}{"".join(bars)}</svg>')
    return Markup(f'<figure>{svg}<figcaption>{escape(title)}<ul class="legend">{legend}</ul></figcaption></figure>')


def _stack(index: int, bucket: str, values: dict[str, Decimal], names: list[str], top: Decimal, step: float,
           unit: str) -> str:
    plot = HEIGHT - PAD_BOTTOM - 8
    width = min(step * 0.7, 48.0)
    x, y = PAD_LEFT + index * step + (step - width) / 2, float(HEIGHT - PAD_BOTTOM)
    parts = []
    for name in names:
        value = values.get(name, Decimal(0))
        if not value:
            continue
        height = float(value / top) * plot
        y -= height
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" '
                     f'fill="{_colour(names, name)}"><title>{escape(bucket)} {escape(name)}: '
                     f'{escape(_short(value))}{unit}</title></rect>')
    label = f'<text class="tick" x="{x + width / 2:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" text-anchor="middle">' \
            f'{escape(bucket[-5:])}</text>'
    return "".join(parts) + label


def _colour(names: list[str], name: str) -> str:
    return COLOURS[names.index(name) % len(COLOURS)]


def _short(value: Decimal) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value.normalize():f}"
