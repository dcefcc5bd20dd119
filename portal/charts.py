"""Server-side charts of the dashboard: small inline SVG, no client library. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 560, 170, 34
COLORS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700")


def _frame(body: str, title: str) -> Markup:
    return Markup(  # noqa: S704 - every text inside ``body`` is escaped where it is built
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{body}</svg>")


def _empty(title: str) -> Markup:
    return _frame(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="muted">no data yet</text>',
                  title)


def line_chart(series: dict[str, Sequence[tuple[datetime, float]]], title: str, unit: str = "") -> Markup:
    """One polyline per named series over a shared time axis (points: (time, value))."""
    points = [p for values in series.values() for p in values if p[1] is not None]
    if not points:
        return _empty(title)
    t0 = min(p[0] for p in points).timestamp()
    t1 = max(p[0] for p in points).timestamp()
    top = max(p[1] for p in points) or 1.0
    span = (t1 - t0) or 1.0

    def xy(t: datetime, v: float) -> str:
        x = PAD + (t.timestamp() - t0) / span * (WIDTH - 2 * PAD)
        y = HEIGHT - PAD + 10 - v / top * (HEIGHT - PAD - 10)
        return f"{x:.1f},{y:.1f}"

    body = [f'<line x1="{PAD}" y1="{HEIGHT - PAD + 10}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD + 10}" class="axis"/>',
            f'<text x="4" y="14" class="muted">{top:.3g}{escape(unit)}</text>',
            f'<text x="{PAD}" y="{HEIGHT - 4}" class="muted">{min(p[0] for p in points):%H:%M}</text>',
            f'<text x="{WIDTH - PAD}" y="{HEIGHT - 4}" text-anchor="end" class="muted">'
            f'{max(p[0] for p in points):%H:%M} UTC</text>']
    for i, (name, values) in enumerate(series.items()):
        coords = " ".join(xy(t, v) for t, v in values if v is not None)
        color = COLORS[i % len(COLORS)]
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        body += [f'<circle cx="{xy_text.split(",")[0]}" cy="{xy_text.split(",")[1]}" r="2.5" fill="{color}"/>'
                 for xy_text in coords.split()]
        body.append(f'<text x="{WIDTH - PAD - 110 * (len(series) - i - 1)}" y="14" text-anchor="end" '
                    f'fill="{color}">{escape(name)}</text>')
    return _frame("".join(body), title)


def bar_chart(bars: Sequence[tuple[str, float]], title: str) -> Markup:
    """Horizontal bars, one per (label, value), largest scale first."""
    if not bars:
        return _empty(title)
    top = max(v for _, v in bars) or 1.0
    row = min(22.0, (HEIGHT - 8) / len(bars))
    body = []
    for i, (label, value) in enumerate(bars):
        y = 4 + i * row
        width = value / top * (WIDTH - 140)
        body.append(f'<text x="4" y="{y + row * 0.7:.1f}">{escape(label or "?")}</text>'
                    f'<rect x="60" y="{y:.1f}" width="{width:.1f}" height="{row * 0.75:.1f}" fill="{COLORS[0]}"/>'
                    f'<text x="{66 + width:.1f}" y="{y + row * 0.7:.1f}" class="muted">{value:g}</text>')
    return _frame("".join(body), title)


def timeline(events: Sequence[tuple[datetime, str]], title: str) -> Markup:
    """Labelled ticks on a time axis (e.g. model versions starting to score)."""
    if not events:
        return _empty(title)
    t0 = min(t for t, _ in events).timestamp()
    span = (max(t for t, _ in events).timestamp() - t0) or 1.0
    y = HEIGHT / 2
    body = [f'<line x1="{PAD}" y1="{y}" x2="{WIDTH - PAD}" y2="{y}" class="axis"/>']
    for i, (t, label) in enumerate(sorted(events)):
        x = PAD + (t.timestamp() - t0) / span * (WIDTH - 2 * PAD)
        dy = -14 if i % 2 == 0 else 26
        anchor = "start" if x < 90 else "end" if x > WIDTH - 90 else "middle"  # keep the text inside
        body.append(f'<circle cx="{x:.1f}" cy="{y}" r="5" fill="{COLORS[0]}"/>'
                    f'<text x="{x:.1f}" y="{y + dy}" text-anchor="{anchor}">{escape(label)}</text>'
                    f'<text x="{x:.1f}" y="{y + dy + 12}" text-anchor="{anchor}" class="muted">{t:%m-%d %H:%M}</text>')
    return _frame("".join(body), title)
