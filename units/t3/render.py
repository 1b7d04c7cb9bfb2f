"""Renders a report payload to HTML or Markdown, with one light-curve plot per candidate.

Rendering is a pure function of the payload: no clock, no environment (matplotlib runs
with its default style, whatever the user's matplotlibrc says, and PNG metadata carry no
version), so the same payload gives the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

from skyledger.units.photometry import mjd_from_jd

__all__ = ["BAND_COLORS", "plot_png", "render_html", "render_markdown"]

BAND_COLORS = {
    "u": "#6a3d9a",
    "g": "#2ca02c",
    "r": "#d62728",
    "i": "#ff7f0e",
    "z": "#8c564b",
    "y": "#404040",
}
_OTHER_COLORS = ("#1f77b4", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
_DASH = "-"
_CSS = """body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}
section{border-top:1px solid #ccc;padding-top:1em;margin-top:1.5em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.2em .5em}
th{background:#f3f3f3}td{text-align:right}img{max-width:100%}.summary{font-size:1.05em}"""


def plot_png(stock: str, rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Return a PNG of the light curve: detections with errors, upper limits as triangles."""
    from matplotlib import style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with style.context("default"):
        fig = Figure(figsize=(7.0, 3.6), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        bands = sorted({str(r["band"]) for r in rows})
        for n, band in enumerate(bands):
            color = BAND_COLORS.get(band, _OTHER_COLORS[n % len(_OTHER_COLORS)])
            own = [r for r in rows if r["band"] == band]
            det = [r for r in own if r["kind"] == "detection" and r["mag"] is not None]
            lim = [r for r in own if r["kind"] == "upper_limit" and r["limmag"] is not None]
            forced = [r for r in own if r["kind"] == "forced" and r["mag"] is not None]
            if det:
                ax.errorbar(
                    [mjd_from_jd(r["jd"]) for r in det],
                    [r["mag"] for r in det],
                    yerr=[r["magerr"] or 0.0 for r in det],
                    fmt="o",
                    ms=4,
                    color=color,
                    label=band,
                )
            if lim:
                ax.scatter(
                    [mjd_from_jd(r["jd"]) for r in lim],
                    [r["limmag"] for r in lim],
                    marker="v",
                    s=22,
                    color=color,
                    alpha=0.45,
                    label=f"{band} limit",
                )
            if forced:
                ax.scatter(
                    [mjd_from_jd(r["jd"]) for r in forced],
                    [r["mag"] for r in forced],
                    marker="s",
                    s=12,
                    facecolors="none",
                    edgecolors=color,
                    label=f"{band} forced",
                )
        ax.invert_yaxis()
        ax.set_xlabel("MJD")
        ax.set_ylabel("magnitude (AB)")
        ax.set_title(stock)
        if bands:
            ax.legend(loc="best", fontsize="small", ncols=2)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _fmt(value: Any, digits: int = 2) -> str:
    return _DASH if value is None else f"{float(value):.{digits}f}"


def _mjd(jd: Any) -> str:
    return _DASH if jd is None else f"{mjd_from_jd(float(jd)):.2f}"


def summary_line(entry: Mapping[str, Any]) -> str:
    """Return one sentence about a candidate: detections, span, brightest, channels."""
    s = entry["summary"]
    if not s.get("ndet"):
        return f"{entry['stock']}: no detections."
    span = s["last_jd"] - s["first_jd"]
    b = s["brightest"]
    channels = ", ".join(entry["channels"]) or "none"
    return (
        f"{entry['stock']}: {s['ndet']} detections in {', '.join(s['bands'])} over "
        f"{span:.1f} d; brightest {b['mag']:.2f} mag in {b['band']} at MJD {_mjd(b['jd'])}; "
        f"channels: {channels}."
    )


_COLUMNS = (
    ("detections", "ndet"),
    ("peak mag", "peak_mag"),
    ("peak MJD", "peak_jd"),
    ("rise mag/d", "rise_rate"),
    ("decline mag/d", "decline_rate"),
    ("duration d", "duration"),
    ("Bazin rise d", "bazin.rise_time"),
    ("Bazin fall d", "bazin.fall_time"),
    ("Bazin chi2/dof", "bazin.reduced_chi2"),
)
_HEADER = ("band", *(name for name, _ in _COLUMNS))


def feature_rows(features: Mapping[str, Any] | None) -> list[list[str]]:
    """Return the features table as text cells, one row per band."""
    if not features:
        return []
    rows = []
    for band, f in sorted((features.get("per_band") or {}).items()):
        cells = [band]
        for _, key in _COLUMNS:
            head, _, tail = key.partition(".")
            value = f.get(head)
            if tail:
                value = value.get(tail) if isinstance(value, Mapping) else None
            if key == "ndet":
                cells.append(str(value or 0))
            elif key == "peak_jd":
                cells.append(_mjd(value))
            else:
                cells.append(_fmt(value, 3 if key.endswith("rate") else 2))
        rows.append(cells)
    return rows


def _color_note(features: Mapping[str, Any] | None) -> str:
    color = (features or {}).get("color") or {}
    if color.get("value") is None:
        return ""
    pair = "-".join(color["bands"])
    return f"{pair} = {color['value']:.2f} mag at MJD {_mjd(color['jd'])}."


def _parts(payload: Mapping[str, Any], entry: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """Return a candidate's features and the ranking unit's reasons from its results."""
    results = entry.get("results") or {}
    ranker = results.get(str(payload["rank_by"]).partition(".")[0]) or {}
    reasons = ranker.get("reasons") if isinstance(ranker, Mapping) else None
    return results.get(payload.get("features_unit")), [str(r) for r in reasons or []]


def render_html(payload: Mapping[str, Any], pngs: Sequence[bytes]) -> str:
    """Return the report as one self-contained HTML page (plots embedded, no links)."""
    e = html.escape
    title = e(str(payload["title"]))
    stocks = payload["stocks"]
    order = "descending" if payload["descending"] else "ascending"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{title}</title><style>{_CSS}</style></head><body>",
        f"<h1>{title}</h1>",
        f"<p>{len(stocks)} candidates ranked by {e(payload['rank_by'])} ({order}).</p>",
    ]
    for entry, png in zip(stocks, pngs, strict=True):
        stock = e(entry["stock"])
        features, reasons = _parts(payload, entry)
        out.append(f'<section id="candidate-{entry["rank"]}">')
        value = f"{e(payload['rank_by'])} = {_fmt(entry['value'], 3)}"
        out.append(f"<h2>{entry['rank']}. {stock} ({value})</h2>")
        out.append(f'<p class="summary">{e(summary_line(entry))} {e(_color_note(features))}</p>')
        data = base64.b64encode(png).decode("ascii")
        out.append(f'<img alt="light curve of {stock}" src="data:image/png;base64,{data}">')
        rows = feature_rows(features)
        if rows:
            out.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in _HEADER) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
            out.append("</table>")
        if reasons:
            out.append("<ul>" + "".join(f"<li>{e(str(r))}</li>" for r in reasons) + "</ul>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_markdown(payload: Mapping[str, Any], pngs: Sequence[bytes]) -> str:
    """Return the report as Markdown, with the same plots embedded as data URIs."""
    stocks = payload["stocks"]
    order = "descending" if payload["descending"] else "ascending"
    out = [
        f"# {payload['title']}",
        "",
        f"{len(stocks)} candidates ranked by `{payload['rank_by']}` ({order}).",
    ]
    for entry, png in zip(stocks, pngs, strict=True):
        features, reasons = _parts(payload, entry)
        out += ["", f"## {entry['rank']}. {entry['stock']} ({_fmt(entry['value'], 3)})", ""]
        out.append(f"{summary_line(entry)} {_color_note(features)}".rstrip())
        data = base64.b64encode(png).decode("ascii")
        out += ["", f"![light curve of {entry['stock']}](data:image/png;base64,{data})"]
        rows = feature_rows(features)
        if rows:
            out += ["", "| " + " | ".join(_HEADER) + " |"]
            out.append("|" + "---|" * len(_HEADER))
            out.extend("| " + " | ".join(row) + " |" for row in rows)
        if reasons:
            out.append("")
            out.extend(f"- {r}" for r in reasons)
    return "\n".join(out) + "\n"
