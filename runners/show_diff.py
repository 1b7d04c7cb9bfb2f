"""What ``skyledger diff`` prints: the per-entry counts of two variants and each changed
stock's values, by their kind (JD, magnitude, count, number)."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from skyledger.projections.diff import Change, Diff

__all__ = ["VALUE_KINDS", "compared_line", "show_change", "show_diff", "value_kind"]


def show_diff(out: Console, found: Diff, limit: int) -> None:
    """Print what differs between two variants: counts per entry and channel, then the
    largest changes of each entry."""
    a, b = escape(found.a), escape(found.b)
    table = Table(title=f"{a} -> {b}: {found.stocks} stocks followed by either")
    for column in ("entry / channel", "added", "removed", "changed", "same"):
        table.add_column(column, justify="left" if column.startswith("entry") else "right")
    for entry, n in found.entries.items():
        table.add_row(escape(entry), *(str(n[k]) for k in ("added", "removed", "changed", "same")))
    for channel, moved in found.channels.items():
        table.add_row(f"channel {escape(channel)}: stocks accepted",
                      str(len(moved["only_b"])), str(len(moved["only_a"])), "", "")  # fmt: skip
    out.print(table)
    compared = compared_line(found)
    if compared:
        out.print(compared, highlight=False, markup=False)
    if found.same:
        out.print("no differences", highlight=False)
        return
    by_entry: dict[str, list[Change]] = {}
    for change in found.changes:
        by_entry.setdefault(change.entry, []).append(change)
    for entry, changes in by_entry.items():
        changes.sort(key=_weight, reverse=True)
        out.print(f"{escape(entry)}: {len(changes)} stocks differ", highlight=False)
        for change in changes[:limit]:
            for line in show_change(change):
                out.print(line, highlight=False, markup=False, overflow="ignore", crop=False)
        if len(changes) > limit:
            out.print(f"  and {len(changes) - limit} more (--limit, --json)", highlight=False)
    for channel, moved in found.channels.items():
        for side, stocks in ((found.a, moved["only_a"]), (found.b, moved["only_b"])):
            if stocks:
                shown = ", ".join(stocks[:limit]) + (" ..." if len(stocks) > limit else "")
                out.print(f"channel {channel}: only {side} accepted {shown}",
                          highlight=False, markup=False)  # fmt: skip


def compared_line(found: Diff) -> str:
    """Return what a diff of limited replays compared, in a line ("" for no limits)."""
    c = found.compared
    if not c.get("limited_by"):
        return ""
    whose = f"the limit{'s' if len(c['limited_by']) > 1 else ''} of " + " and ".join(
        c["limited_by"]
    )
    if c["empty"]:
        return f"compared nothing: {whose} do not meet (their ranges of positions)"
    shown = []
    for option in ("since", "until"):
        if c[option] is not None:
            shown.append(f"--{option} {c[option]}")
    for option, names in (("--stock", c["stocks"]), ("--channel", c["channels"])):
        if names is not None:
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            shown.append(f"{option} {', '.join(names[:5]) or 'none'}{more}")
    return f"compared {found.stocks} stocks: {whose} ({'; '.join(shown)})"


def _weight(change: Change) -> float:
    """Return how much a change weighs: its largest numeric delta (added, removed: most)."""
    if change.kind != "changed":
        return float("inf")
    return max((abs(v.get("delta", 0.0)) for v in change.values.values()), default=0.0)


VALUE_KINDS: tuple[tuple[str, str], ...] = (
    # T2CandidateScore's components: criteria in [0, 1], whatever they are named after
    ("components.*", "number"),
    # T2LightCurveFeatures' Bazin fits (per_band.B.bazin.*): t0 a JD, taus in days; the
    # amplitude and baseline are fluxes (nJy), not magnitudes
    ("*bazin.reference_time", "jd"),
    ("*bazin.rise_time", "days"),
    ("*bazin.fall_time", "days"),
    ("*bazin.npoints", "count"),
    ("*bazin.*", "number"),
    # Julian dates: first_jd, last_jd, peak.jd, color.jd, per_band.B.peak_jd, last_limit_jd
    ("jd", "jd"),
    ("*.jd", "jd"),
    ("*_jd", "jd"),
    # T2LightCurveSummary's JDs (its last_significant_nondetection_jd is a *_jd)
    ("first_detection", "jd"),
    ("last_detection", "jd"),
    # durations, days: duration (all bands, and per band), the colour pair's dt and offset
    ("duration", "days"),
    ("*.duration", "days"),
    ("color.dt", "days"),
    ("color.offset_from_peak", "days"),
    # magnitudes: peak.mag, color.value, per_band.B.peak_mag, peak_magerr, last_limit_mag,
    # and per_band.B.amplitude (half the range of magnitudes)
    ("mag", "mag"),
    ("*.mag", "mag"),
    ("*_mag", "mag"),
    ("*_magerr", "mag"),
    ("color.value", "mag"),
    ("per_band.*.amplitude", "mag"),
    # T2LightCurveSummary's magnitudes: the latest magpsf, the non-detection's limit
    ("magpsf", "mag"),
    ("*_diffmaglim", "mag"),
    # counts: ndet (all bands, and per band), n_negative, n_upper_limits, n_forced, and
    # the points of the rise and decline rates
    ("ndet", "count"),
    ("*.ndet", "count"),
    ("n_*", "count"),
    ("num_*", "count"),  # T2LightCurveSummary's num_detections, num_negative
    ("*_npoints", "count"),
)
"""What a value of a result is, by its dotted key (the first pattern that matches; other
numbers print as they are): how ``skyledger diff`` prints it and its delta."""

_FORMATS: dict[str, tuple[str, str]] = {  # kind -> (value, delta)
    "jd": ("{:.5f}", "{:+.5f} d"),
    "days": ("{:.5f} d", "{:+.5f} d"),
    "mag": ("{:.3f}", "{:+.3f} mag"),
    "count": ("{:.0f}", "{:+.0f}"),
    "number": ("{:.4g}", "{:+.4g}"),
}


def value_kind(key: str) -> str:
    """Return what a result's value is by its dotted key (:data:`VALUE_KINDS`)."""
    return next((kind for pattern, kind in VALUE_KINDS if fnmatchcase(key, pattern)), "number")


def show_change(change: Change) -> list[str]:
    """Return one change: the stock and what happened, then each value from a to b."""
    if change.kind != "changed":
        return [f"  {change.stock}: {change.kind}"]
    lines = [f"  {change.stock}:"]
    for key, v in change.values.items():
        if isinstance(v["a"], list | dict) or isinstance(v["b"], list | dict):
            lines.append(f"    {key} changed")
            continue
        kind = value_kind(key)
        text = f"    {key} {_short(v['a'], kind)} -> {_short(v['b'], kind)}"
        if "delta" in v:
            text += f" ({_FORMATS[kind][1].format(v['delta'])})"
        if "rank" in v:
            text += f", rank {v['rank'][0]} -> {v['rank'][1]}"
        lines.append(text)
    return lines


def _short(value: Any, kind: str = "number") -> str:
    """Return a value in a few characters (a number as its kind prints: _FORMATS; an
    integer of no kind as it is)."""
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float) or (isinstance(value, int) and kind != "number"):
        return _FORMATS[kind][0].format(value)
    text = json.dumps(value, default=str)
    return text if len(text) <= 24 else text[:21] + "..."
