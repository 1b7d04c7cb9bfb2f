"""What people read: the run summary as a table, a diff's values by their kind."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from rich.console import Console

from skyledger.projections.diff import compare, flatten
from skyledger.runners.show import show_summary
from skyledger.runners.show_diff import show_change, value_kind
from skyledger.runners.summary import RunSummary
from skyledger.units.t2.features import T2LightCurveFeatures
from skyledger.units.t2.score import T2CandidateScore
from skyledger.units.t2.summary import T2LightCurveSummary
from skyledger.units.testing import datapoints_from, run_unit


def printed(summary: RunSummary) -> str:
    out = Console(file=io.StringIO(), width=120, color_system=None)
    show_summary(out, summary)
    text = out.file.getvalue()
    assert isinstance(text, str)
    return text


def test_two_entries_of_one_reactor_are_told_apart() -> None:
    summary = RunSummary("r" * 32, "j" * 32, "sqlite:///x.sqlite", status="ok")
    summary.reactions = [
        {"reactor": "WebhookReactor", "index": 0, "intended": 3},
        {"reactor": "WebhookReactor", "index": 1, "intended": 5},
        {"reactor": "ReportReactor", "index": 2, "intended": 1},
    ]
    text = printed(summary)
    assert "T3 WebhookReactor (t3 entry 0): intended" in text
    assert "T3 WebhookReactor (t3 entry 1): intended" in text
    assert "T3 ReportReactor: intended" in text  # alone: no entry number needed


def test_a_resumed_source_is_shown_under_the_alerts_it_read() -> None:
    summary = RunSummary("r" * 32, "j" * 32, "sqlite:///x.sqlite", status="ok")
    summary.sources = [
        {"source": "FileSource:night", "read": 0, "resumed_after": {"item": 35, "record": 0}},
        {"source": "FileSource:new", "read": 4, "resumed_after": None},
    ]
    lines = printed(summary).splitlines()
    at = next(i for i, line in enumerate(lines) if "alerts read" in line)
    assert "resumed source 1 after item 35 " in lines[at + 1]
    assert "source 1: FileSource:night" in lines  # below the table, a line of its own
    assert not any("FileSource:new" in line for line in lines)  # read from the start


def test_paths_in_a_summary_are_never_cut_or_wrapped() -> None:
    summary = RunSummary("r" * 32, "j" * 32, "sqlite:///x.sqlite", status="ok")
    long = "/" + "/".join(["a-long-checkout-folder"] * 12)  # 277 characters
    summary.sources = [{"source": f"FileSource:{long}", "read": 0,
                        "resumed_after": {"item": 35, "record": 0}}]  # fmt: skip
    summary.unreadable["inputs"] = [f"{long}/broken.avro#0: not Avro"]
    lines = printed(summary).splitlines()
    assert f"source 1: FileSource:{long}" in lines
    assert f"unreadable: {long}/broken.avro#0: not Avro" in lines


ZTF21 = Path(__file__).resolve().parents[1] / "data" / "ztf" / "ZTF21abiuvdk"


def kinds_of(body: dict[str, Any]) -> dict[str, str]:
    """Return the kind of each numeric value of a result (its dotted key's)."""
    return {k: value_kind(k) for k, v in flatten(body).items()
            if isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip


def test_a_diff_prints_julian_dates_days_magnitudes_and_counts_as_such() -> None:
    """The real features and score of ZTF21abiuvdk after 5 of its alerts and after all
    34: every numeric key has the kind the units' docs give it, and prints so."""
    files = sorted(ZTF21.glob("*.avro"))
    features, score = T2LightCurveFeatures(), T2CandidateScore()
    early = run_unit(features, datapoints_from(files[:5]))
    late = run_unit(features, datapoints_from(files))
    kinds = kinds_of(late)
    per_band = {k.split(".", 2)[2]: v for k, v in kinds.items() if k.startswith("per_band.g.")}
    assert per_band == {
        "ndet": "count", "rise_npoints": "count", "decline_npoints": "count",
        "peak_jd": "jd", "first_jd": "jd", "last_jd": "jd", "last_limit_jd": "jd",
        "duration": "days", "peak_mag": "mag", "peak_magerr": "mag", "last_limit_mag": "mag",
        "amplitude": "mag",  # half the range of magnitudes
        "rise_rate": "number", "rise_rate_err": "number",  # mag/day: printed as they are
        "decline_rate": "number", "decline_rate_err": "number",
        "bazin.reference_time": "jd", "bazin.rise_time": "days", "bazin.fall_time": "days",
        "bazin.amplitude": "number", "bazin.baseline": "number",  # fluxes, nJy
        "bazin.reduced_chi2": "number", "bazin.npoints": "count",
    }  # fmt: skip
    assert {k: v for k, v in kinds.items() if not k.startswith("per_band.")} == {
        "ndet": "count", "n_negative": "count", "n_upper_limits": "count", "n_forced": "count",
        "first_jd": "jd", "last_jd": "jd", "duration": "days", "peak.jd": "jd",
        "peak.mag": "mag", "color.value": "mag", "color.jd": "jd", "color.dt": "days",
        "color.offset_from_peak": "days",
    }  # fmt: skip
    scored = run_unit(score, datapoints_from(files), {"T2LightCurveFeatures": late})
    assert set(kinds_of(scored).values()) == {"number"}  # criteria in [0, 1], and the score

    (change,) = compare("T2LightCurveFeatures", {"ZTF21abiuvdk": flatten(early)},
                        {"ZTF21abiuvdk": flatten(late)})  # fmt: skip
    lines = {line.split()[0]: line.strip() for line in show_change(change)[1:]}
    a, b = flatten(early), flatten(late)
    assert lines["last_jd"] == (
        f"last_jd {a['last_jd']:.5f} -> {b['last_jd']:.5f} (+{b['last_jd'] - a['last_jd']:.5f} d)"
    )
    assert re.fullmatch(r"last_jd 24\d{5}\.\d{5} -> 24\d{5}\.\d{5} \(\+\d+\.\d{5} d\)",
                        lines["last_jd"])  # fmt: skip
    assert re.fullmatch(r"duration \d+\.\d{5} d -> \d+\.\d{5} d \(\+\d+\.\d{5} d\)",
                        lines["duration"])  # fmt: skip
    assert lines["ndet"] == f"ndet {a['ndet']} -> {b['ndet']} (+{b['ndet'] - a['ndet']})"
    for key in ("peak.mag", "per_band.g.amplitude", "per_band.r.peak_mag"):
        delta = b[key] - a[key]
        assert lines[key] == f"{key} {a[key]:.3f} -> {b[key]:.3f} ({delta:+.3f} mag)"
    assert lines["per_band.g.bazin.reference_time"] == (  # no fit after 5 alerts
        f"per_band.g.bazin.reference_time null -> {b['per_band.g.bazin.reference_time']:.5f}"
    )
    assert lines["per_band.g.bazin.amplitude"] == "per_band.g.bazin.amplitude null -> 7.119e+07"


def test_a_diff_of_the_summary_prints_its_julian_dates_magnitudes_and_counts() -> None:
    """T2LightCurveSummary of ZTF21abiuvdk after 5 alerts and after 34: its JDs print as
    JDs (not 2.459e+06), its counts as counts, magpsf and the limit as magnitudes."""
    files = sorted(ZTF21.glob("*.avro"))
    unit = T2LightCurveSummary()
    early = run_unit(unit, datapoints_from(files[:5]))
    late = run_unit(unit, datapoints_from(files))
    assert {k: v for k, v in kinds_of(late).items() if v != "number"} == {
        "num_detections": "count", "num_negative": "count",
        "first_detection": "jd", "last_detection": "jd", "last_significant_nondetection_jd": "jd",
        "last_significant_nondetection_diffmaglim": "mag", "magpsf": "mag",
    }  # fmt: skip
    (change,) = compare("T2LightCurveSummary", {"ZTF21abiuvdk": flatten(early)},
                        {"ZTF21abiuvdk": flatten(late)})  # fmt: skip
    lines = {line.split()[0]: line.strip() for line in show_change(change)[1:]}
    assert re.fullmatch(r"last_detection 24\d{5}\.\d{5} -> 2459461\.90953 \(\+\d+\.\d{5} d\)",
                        lines["last_detection"])  # fmt: skip
    assert re.fullmatch(r"num_detections \d+ -> 34 \(\+\d+\)", lines["num_detections"])
