"""A stock's light curve as an SVG figure, drawn on the server (no script, no CDN).

Detections are dots with error bars, forced photometry squares, upper limits downward
triangles at the limiting magnitude: one colour per band, magnitudes growing down.
Every mark carries its values in a ``<title>`` (the browser shows it on hover) and its
band and kind in ``data-`` attributes. A curve with no magnitude at all (Rubin's
difference fluxes) is drawn in flux instead, growing up. Points with no value on the
axis drawn are counted under the figure, not dropped silently.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from skyledger.projections.queries import DatapointRow

__all__ = ["BAND_COLOURS", "Curve", "draw"]

BAND_COLOURS = {
    "u": "#6a3d9a", "g": "#1b9e3a", "r": "#d62728", "i": "#ff7f0e", "z": "#8c564b",
    "y": "#555555", "ZTF_g": "#1b9e3a", "ZTF_r": "#d62728", "ZTF_i": "#ff7f0e",
}  # fmt: skip
_OTHER = ("#1f77b4", "#e377c2", "#17becf", "#bcbd22")
_W, _H = 760, 340
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 30, 44
_MJD = 2400000.5


@dataclass(frozen=True)
class Curve:
    """The figure and what it shows: marks per band and kind, and what it could not draw."""

    svg: str
    drawn: dict[tuple[str, str], int]  # (band, kind) -> marks
    undrawn: int  # datapoints with no value on the axis drawn
    axis: str  # "mag" or "flux"

    def count(self, band: str, kind: str) -> int:
        """Return the marks drawn of one band and kind."""
        return self.drawn.get((band, kind), 0)


def _value(dp: DatapointRow, axis: str) -> tuple[float, float | None] | None:
    """Return a datapoint's value and error on an axis, or None if it has none."""
    if axis == "mag":
        value = dp.limmag if dp.kind == "upper_limit" else dp.mag
        error = None if dp.kind == "upper_limit" else dp.magerr
    else:
        value, error = dp.flux, dp.fluxerr
    if value is None or not math.isfinite(value) or dp.jd is None:
        return None
    return value, (error if error is not None and math.isfinite(error) else None)


def _colour(band: str, order: list[str]) -> str:
    return BAND_COLOURS.get(band) or _OTHER[order.index(band) % len(_OTHER)]


def _ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Return round tick values covering [low, high]."""
    span = high - low or 1.0
    raw = span / count
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + k * step for k in range(int((high - first) / step) + 1)]


def _title(dp: DatapointRow, value: float, error: float | None, axis: str) -> str:
    what = {"detection": "detection", "forced": "forced", "upper_limit": "upper limit"}
    unit = "mag" if axis == "mag" else "flux"
    shown = f"{value:.3f}" if axis == "mag" else f"{value:.6g}"
    if error is not None:
        shown += f" ± {error:.3f}" if axis == "mag" else f" ± {error:.3g}"
    jd = dp.jd or 0.0
    return (f"{what.get(dp.kind, dp.kind)} · {dp.band or '?'} · JD {jd:.5f} (MJD "
            f"{jd - _MJD:.5f}) · {unit} {shown}")  # fmt: skip


def draw(points: Sequence[DatapointRow]) -> Curve:
    """Return the light curve of a stock's datapoints."""
    axis = "mag" if any(p.mag is not None or p.limmag is not None for p in points) else "flux"
    placed = [(p, v) for p in points if (v := _value(p, axis)) is not None]
    undrawn = len(points) - len(placed)
    if not placed:
        empty = (f'<svg class="lightcurve" viewBox="0 0 {_W} 60" role="img" '
                 f'aria-label="no light curve"><text x="10" y="35">no datapoint has a value '
                 f"to draw</text></svg>")  # fmt: skip
        return Curve(empty, {}, undrawn, axis)
    jds = [p.jd for p, _ in placed if p.jd is not None]
    lows = [v - (e or 0.0) for _, (v, e) in placed]
    highs = [v + (e or 0.0) for _, (v, e) in placed]
    x0, x1 = min(jds), max(jds)
    pad_x = max((x1 - x0) * 0.04, 0.5)
    x0, x1 = x0 - pad_x, x1 + pad_x
    y0, y1 = min(lows), max(highs)
    pad_y = max((y1 - y0) * 0.06, 0.1 if axis == "mag" else abs(y1) * 0.05 or 1.0)
    y0, y1 = y0 - pad_y, y1 + pad_y
    inner_w, inner_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def sx(jd: float) -> float:
        return _LEFT + (jd - x0) / (x1 - x0) * inner_w

    def sy(value: float) -> float:
        fraction = (value - y0) / (y1 - y0)  # magnitudes grow down, fluxes up
        return _TOP + (fraction if axis == "mag" else 1 - fraction) * inner_h

    parts = [f'<svg class="lightcurve" viewBox="0 0 {_W} {_H}" role="img" '
             f'aria-label="light curve" xmlns="http://www.w3.org/2000/svg">',
             f'<rect class="frame" x="{_LEFT}" y="{_TOP}" width="{inner_w}" '
             f'height="{inner_h}" fill="none" stroke="#999"/>']  # fmt: skip
    for t in _ticks(x0 - _MJD, x1 - _MJD):
        x = sx(t + _MJD)
        bottom = _TOP + inner_h
        parts.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" '
                     f'stroke="#999"/><text class="tick" x="{x:.1f}" y="{bottom + 16}" '
                     f'text-anchor="middle">{t:g}</text>')  # fmt: skip
    for t in _ticks(y0, y1):
        y = sy(t)
        parts.append(f'<line x1="{_LEFT - 4}" y1="{y:.1f}" x2="{_LEFT}" y2="{y:.1f}" '
                     f'stroke="#999"/><text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{t:g}</text>')  # fmt: skip
    middle, label = _TOP + inner_h / 2, "magnitude" if axis == "mag" else "flux"
    parts.append(f'<text class="label" x="{_LEFT + inner_w / 2}" y="{_H - 6}" '
                 f'text-anchor="middle">MJD</text><text class="label" x="14" y="{middle}" '
                 f'text-anchor="middle" transform="rotate(-90 14 {middle})">'
                 f"{label}</text>")  # fmt: skip
    bands = sorted({p.band or "?" for p, _ in placed})
    drawn: Counter[tuple[str, str]] = Counter()
    for p, (value, error) in placed:
        band = p.band or "?"
        colour = _colour(band, bands)
        x, y = sx(p.jd or 0.0), sy(value)
        title = f"<title>{escape(_title(p, value, error, axis))}</title>"
        data = f'data-band="{escape(band)}" data-kind="{escape(p.kind)}" data-jd="{p.jd}"'
        if p.kind == "upper_limit":
            parts.append(f'<path class="mark upper-limit" {data} d="M{x - 5:.1f},{y:.1f} '
                         f'L{x + 5:.1f},{y:.1f} L{x:.1f},{y + 8:.1f} Z" fill="none" '
                         f'stroke="{colour}" opacity="0.7">{title}</path>')  # fmt: skip
        else:
            if error:
                ya, yb = sy(value - error), sy(value + error)
                parts.append(f'<line class="errorbar" x1="{x:.1f}" y1="{ya:.1f}" '
                             f'x2="{x:.1f}" y2="{yb:.1f}" stroke="{colour}"/>')  # fmt: skip
            if p.kind == "detection":
                parts.append(f'<circle class="mark detection" {data} cx="{x:.1f}" '
                             f'cy="{y:.1f}" r="4" fill="{colour}">{title}</circle>')  # fmt: skip
            else:
                parts.append(f'<rect class="mark {escape(p.kind)}" {data} x="{x - 3.5:.1f}" '
                             f'y="{y - 3.5:.1f}" width="7" height="7" fill="none" '
                             f'stroke="{colour}">{title}</rect>')  # fmt: skip
        drawn[(band, p.kind)] += 1
    for k, band in enumerate(bands):
        x = _LEFT + 10 + k * 70
        parts.append(f'<g class="legend"><circle cx="{x}" cy="12" r="4" '
                     f'fill="{_colour(band, bands)}"/><text x="{x + 8}" y="16">'
                     f"{escape(band)}</text></g>")  # fmt: skip
    parts.append("</svg>")
    return Curve("".join(parts), dict(drawn), undrawn, axis)
