"""T2LightCurveFeatures on ZTF21abiuvdk, checked against values computed here from the packets."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from skyledger.ledger.canonical import canonical_bytes
from skyledger.units.shapers import ZtfShaper
from skyledger.units.t2 import T2LightCurveFeatures
from skyledger.units.views import T2View
from tests.units.science import SN, alerts, points_by_stock, view_of

ROOT = Path(__file__).resolve().parents[2]


def _raw_detections(shared_data: Path) -> dict[str, list[tuple[float, float, float]]]:
    """Return (jd, magpsf, sigmapsf) per band, one per candid, read straight from the records."""
    seen: dict[int, tuple[int, float, float, float]] = {}
    for alert in alerts(shared_data / "ztf" / SN):
        entries = [alert.payload["candidate"], *(alert.payload["prv_candidates"] or [])]
        for e in entries:
            if e["candid"] is not None and e["candid"] not in seen:
                seen[e["candid"]] = (e["fid"], e["jd"], e["magpsf"], e["sigmapsf"])
    bands: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for fid, jd, mag, err in seen.values():
        bands[{1: "g", 2: "r", 3: "i"}[fid]].append((jd, mag, err))
    return {b: sorted(rows) for b, rows in bands.items()}


@pytest.fixture(scope="module")
def result(shared_data: Path) -> dict[str, Any]:
    """Return the features of ZTF21abiuvdk's full light curve."""
    view = view_of(SN, points_by_stock(shared_data / "ztf" / SN)[SN])
    return dict(T2LightCurveFeatures().process(view))


def test_counts_peaks_and_times_match_the_packets(
    shared_data: Path, result: dict[str, Any]
) -> None:
    raw = _raw_detections(shared_data)
    assert result["bands"] == sorted(raw) == ["g", "r"]
    assert result["ndet"] == sum(len(rows) for rows in raw.values()) == 34
    assert result["n_upper_limits"] == 16
    for band, rows in raw.items():
        f = result["per_band"][band]
        jd = [r[0] for r in rows]
        mag = [r[1] for r in rows]
        assert f["ndet"] == len(rows)
        assert f["peak_mag"] == pytest.approx(min(mag), abs=1e-4)  # history rounds to 1e-4
        assert f["peak_jd"] == pytest.approx(jd[mag.index(min(mag))], abs=1e-6)
        assert f["first_jd"] == pytest.approx(min(jd), abs=1e-6)
        assert f["last_jd"] == pytest.approx(max(jd), abs=1e-6)
        assert f["duration"] == pytest.approx(max(jd) - min(jd), abs=1e-5)
        assert f["amplitude"] == pytest.approx((max(mag) - min(mag)) / 2, abs=1e-4)
    assert result["peak"]["band"] == "g"  # 12.43 in g beats 12.53 in r
    assert result["first_jd"] == pytest.approx(min(r[0] for rows in raw.values() for r in rows))


def test_rise_and_decline_rates_are_weighted_linear_fits(
    shared_data: Path, result: dict[str, Any]
) -> None:
    for band, rows in _raw_detections(shared_data).items():
        f = result["per_band"][band]
        t, m, e = (np.array(col) for col in zip(*rows, strict=True))
        p = int(np.argmin(m))
        rise = np.polyfit(t[: p + 1] - t[0], m[: p + 1], 1, w=1 / e[: p + 1])[0]
        decline = np.polyfit(t[p:] - t[p], m[p:], 1, w=1 / e[p:])[0]
        assert f["rise_rate"] == pytest.approx(-rise, rel=1e-3)
        assert f["decline_rate"] == pytest.approx(decline, rel=1e-3)
        assert f["rise_rate"] > 0.1  # brightening by tenths of a magnitude a day
        assert 0.01 < f["decline_rate"] < 0.15  # a supernova-like fading


def test_colour_is_the_nearest_pair_to_the_r_peak(
    shared_data: Path, result: dict[str, Any]
) -> None:
    raw = _raw_detections(shared_data)
    t_peak = result["per_band"]["r"]["peak_jd"]
    pairs = [
        (abs((g[0] + r[0]) / 2 - t_peak), g[1] - r[1])
        for g in raw["g"]
        for r in raw["r"]
        if abs(g[0] - r[0]) <= 1.0
    ]
    offset, colour = min(pairs)
    assert result["color"]["value"] == pytest.approx(colour, abs=2e-4)
    assert result["color"]["offset_from_peak"] == pytest.approx(offset, abs=1e-5)
    assert result["color"]["dt"] <= 1.0


def test_bazin_fit_of_the_r_band_is_a_supernova_shape(result: dict[str, Any]) -> None:
    r = result["per_band"]["r"]
    fit = r["bazin"]
    assert r["bazin_reason"] is None
    assert fit["npoints"] == 16
    assert 0 < fit["rise_time"] < fit["fall_time"] < 100
    assert fit["amplitude"] > 0
    assert r["first_jd"] - 30 < fit["reference_time"] < r["peak_jd"]
    assert fit["reduced_chi2"] < 50
    t_max = fit["reference_time"] + fit["rise_time"] * math.log(
        fit["fall_time"] / fit["rise_time"] - 1
    )
    assert abs(t_max - r["peak_jd"]) < 5  # the model peaks where the data do
    peak_flux = 10 ** (-0.4 * (r["peak_mag"] - 31.4))
    assert 0.5 < fit["amplitude"] / peak_flux < 3


def test_too_few_points_and_failed_fits_are_recorded(shared_data: Path) -> None:
    first_alert = ZtfShaper().shape(alerts(shared_data / "ztf" / SN)[0])
    early = dict(T2LightCurveFeatures().process(view_of(SN, first_alert)))
    (band,) = early["bands"]
    f = early["per_band"][band]
    assert f["bazin"] is None
    assert f["bazin_reason"].startswith("too few points: 1 detections")
    assert f["rise_rate"] is None
    assert f["decline_rate"] is None
    view = view_of(SN, points_by_stock(shared_data / "ztf" / SN)[SN])
    flat = [
        dataclasses.replace(d, body={**d.body, "flux": 1000.0, "fluxerr": 10.0})
        for d in view.datapoints
    ]
    failed = T2LightCurveFeatures().process(view_of(SN, flat))
    assert failed["per_band"]["r"]["bazin"] is None
    assert failed["per_band"]["r"]["bazin_reason"].startswith("fit failed")


def test_negative_detections_do_not_make_a_peak(shared_data: Path) -> None:
    view = view_of(SN, points_by_stock(shared_data / "ztf" / SN)[SN])
    det = next(d for d in view.datapoints if d.kind == "detection")
    negative = dataclasses.replace(det, body={**det.body, "mag": 10.0, "flux": -1e8})
    dps = tuple(negative if d.id == det.id else d for d in view.datapoints)
    out = T2LightCurveFeatures().process(T2View(SN, view.subject, dps))
    assert out["n_negative"] == 1
    assert out["ndet"] == 33
    assert out["first_jd_reason"] is None
    assert out["peak"]["mag"] > 12


def test_output_is_json_and_independent_of_input_order(shared_data: Path) -> None:
    points = list(points_by_stock(shared_data / "ztf" / SN)[SN])
    view = view_of(SN, points)
    unit = T2LightCurveFeatures()
    expected = canonical_bytes(dict(unit.process(view)))
    json.loads(json.dumps(unit.process(view), allow_nan=False))
    rng = random.Random(3)
    for _ in range(3):
        shuffled = list(view.datapoints)
        rng.shuffle(shuffled)
        no_curve = T2View(SN, view.subject, tuple(shuffled))  # built from datapoints alone
        assert canonical_bytes(dict(unit.process(no_curve))) == expected
    rng.shuffle(points)  # duplicates included: the fullest body wins, whatever the order
    assert canonical_bytes(dict(unit.process(view_of(SN, points)))) == expected
    _assert_plain(unit.process(view))


def _assert_plain(value: Any) -> None:
    """Fail on anything that is not plain JSON (numpy scalars, NaN, tuples)."""
    if isinstance(value, dict):
        for item in value.values():
            _assert_plain(item)
    elif isinstance(value, list):
        for item in value:
            _assert_plain(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), type(value)
        assert not (isinstance(value, float) and not math.isfinite(value))


def test_same_bytes_in_another_process(shared_data: Path) -> None:
    code = (
        "import sys; from pathlib import Path;"
        "from tests.units.science import SN, points_by_stock, view_of;"
        "from skyledger.units.t2 import T2LightCurveFeatures;"
        "from skyledger.ledger.canonical import canonical_bytes;"
        "v = view_of(SN, points_by_stock(Path(sys.argv[1]) / 'ztf' / SN)[SN]);"
        "sys.stdout.write(canonical_bytes(dict(T2LightCurveFeatures().process(v))).hex())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(shared_data)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    view = view_of(SN, points_by_stock(shared_data / "ztf" / SN)[SN])
    assert done.stdout == canonical_bytes(dict(T2LightCurveFeatures().process(view))).hex()


def test_every_real_stock_gets_features(shared_data: Path) -> None:
    unit = T2LightCurveFeatures()
    for folder in ("ztf/night", "ztf/samples", "lsst/real", "elasticc"):
        for stock, points in sorted(points_by_stock(shared_data / folder).items()):
            out = dict(unit.process(view_of(stock, points)))
            _assert_plain(out)
            assert out["ndet"] + out["n_negative"] >= 1
            assert (out["first_jd"] is None) == (out["first_jd_reason"] is not None)


def test_an_all_negative_stock_says_why_it_has_no_first_jd(shared_data: Path) -> None:
    """ZTF17aaaaxxm (the night): its 4 detections are all negative subtractions (isdiffpos
    'f' in the packets), so no first_jd, and the result says so instead of a bare null."""
    stock = "ZTF17aaaaxxm"
    isdiffpos = {
        e["candid"]: e["isdiffpos"]
        for a in alerts(shared_data / "ztf" / "night")
        if a.stock == stock
        for e in [a.payload["candidate"], *(a.payload["prv_candidates"] or [])]
        if e.get("candid") is not None
    }
    assert sorted(isdiffpos.values()) == ["f", "f", "f", "f"]
    out = T2LightCurveFeatures().process(
        view_of(stock, points_by_stock(shared_data / "ztf" / "night")[stock])
    )
    assert (out["ndet"], out["n_negative"], out["first_jd"]) == (0, 4, None)
    assert out["first_jd_reason"] == "all 4 detections are negative subtractions"
    assert out["peak"] is None
    assert (
        T2LightCurveFeatures().process(T2View(stock, "s", ()))["first_jd_reason"] == "no detections"
    )
