"""T2LightCurveSummary on real ZTF packets, against values read by hand from the packets,
and against AMPEL's rule where ours differs (the last significant non-detection, negative
subtractions)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from skyledger.ledger.errors import ConfigError
from skyledger.units.t2 import T2LightCurveSummary
from skyledger.units.testing import assert_deterministic, check_determinism
from skyledger.units.views import T2View
from tests.units.science import SN, alerts, points_by_stock, view_of

JD2017 = 2457754.5  # AMPEL's ZiDataPointShaper: the origin of its upper-limit ids


def summary(shared_data: Path, stock: str, folder: str = "night") -> dict[str, Any]:
    """Return the summary of a real stock's full light curve (all its alerts in ``folder``)."""
    points = points_by_stock(shared_data / "ztf" / folder)[stock]
    return dict(T2LightCurveSummary().process(view_of(stock, points)))


def records(shared_data: Path, stock: str, folder: str) -> tuple[list[dict[str, Any]], ...]:
    """Return the stock's detections (one per candid, by time) and upper limits (by time),
    read straight from the packets' candidate and prv_candidates records."""
    detections: dict[int, dict[str, Any]] = {}
    limits: dict[tuple[float, int], dict[str, Any]] = {}
    for alert in alerts(shared_data / "ztf" / folder):
        if alert.stock != stock:
            continue
        for e in [alert.payload["candidate"], *(alert.payload["prv_candidates"] or [])]:
            if e.get("candid") is None:
                limits[(e["jd"], e["fid"])] = e
            elif len(e) > len(detections.get(e["candid"], {})):  # the candidate, not history
                detections[e["candid"]] = e
    return sorted(detections.values(), key=lambda e: e["jd"]), sorted(
        limits.values(), key=lambda e: e["jd"]
    )


def ampel_nondetection(limits: list[dict[str, Any]], first_jd: float) -> dict[str, Any] | None:
    """AMPEL's pick of the "last significant non-detection", reproduced: its T2 unit gets
    upper limits in ascending order of their ids (T1Compiler sorts a state's datapoint ids,
    T2Worker keeps that order, LightCurve.get_upperlimits filters without sorting), and
    ZiDataPointShaper's upper-limit id falls as jd grows; ``next(reversed(...))`` of that
    list is the upper limit with the largest id: the earliest."""

    def ampel_id(e: dict[str, Any]) -> int:
        rcid = e["rcid"] if e.get("rcid") is not None else (e["pid"] % 10000) // 100
        return (
            int((JD2017 - e["jd"]) * 1000000) * 10000000
            - rcid * 100000
            - round(e["diffmaglim"] * 1000)
        )

    qualifying = [e for e in limits if e["jd"] < first_jd and e["diffmaglim"] > 19.5]
    return next(reversed(sorted(qualifying, key=ampel_id)), None)


def test_ztf21abiuvdk_matches_the_packets(shared_data: Path) -> None:
    """Every value checked by hand against the 34 alerts of ZTF21abiuvdk: 34 detections,
    all positive (isdiffpos 't'), the first on JD 2459396.9046875 (r, candid
    1642404680815015001), the latest on 2459461.9095255 (g, the last alert's candidate
    1707409520815015012); 10 upper limits before the first detection, 7 deeper than 19.5,
    the latest of those on 2459393.9556019 in r at 19.9312."""
    out = summary(shared_data, SN, SN)
    detections, limits = records(shared_data, SN, SN)
    assert len(detections) == 34
    assert {e["isdiffpos"] for e in detections} == {"t"}
    assert out["num_detections"] == 34
    assert out["num_negative"] == 0
    assert out["first_detection"] == 2459396.9046875 == detections[0]["jd"]
    assert out["first_detection_reason"] is None
    assert out["last_detection"] == 2459461.9095255 == detections[-1]["jd"]
    assert (out["ra_dis"], out["dec_dis"]) == (0.814293, 16.1456989)  # the first detection's
    assert out["ra"] == 0.8142901
    assert out["dec"] == 16.1456926
    assert out["magpsf"] == pytest.approx(15.595422744750977, abs=0)
    assert out["drb"] == pytest.approx(0.9999799728393555, abs=0)
    assert out["sgscore1"] == 0.5
    assert out["distnr"] == pytest.approx(3.4400696754455566, abs=0)
    assert out["distpsnr1"] == pytest.approx(3.8805456161499023, abs=0)
    assert out["last_significant_nondetection_jd"] == 2459393.9556019
    assert out["last_significant_nondetection_fid"] == 2
    assert out["last_significant_nondetection_band"] == "r"
    assert out["last_significant_nondetection_diffmaglim"] == pytest.approx(19.9312, abs=1e-4)
    assert out["last_significant_nondetection_reason"] is None
    before = [e for e in limits if e["jd"] < detections[0]["jd"]]
    assert len(before) == 10
    assert sum(e["diffmaglim"] > 19.5 for e in before) == 7


def test_the_last_significant_nondetection_is_the_latest_not_ampels_earliest(
    shared_data: Path,
) -> None:
    """On ZTF21abiuvdk AMPEL's rule picks the earliest of the 7 deep upper limits (JD
    2459382.9353241, g, 20.3547: 14 days before the first detection); ours the latest
    (2459393.9556019, r, 19.9312: 2.9 days before), the one that dates the rise."""
    out = summary(shared_data, SN, SN)
    detections, limits = records(shared_data, SN, SN)
    ampel = ampel_nondetection(limits, detections[0]["jd"])
    assert ampel is not None
    assert (ampel["jd"], ampel["fid"]) == (2459382.9353241, 1)
    assert ampel["diffmaglim"] == pytest.approx(20.3547, abs=1e-4)
    assert out["last_significant_nondetection_jd"] == 2459393.9556019 != ampel["jd"]
    deep = [e["jd"] for e in limits if e["jd"] < detections[0]["jd"] and e["diffmaglim"] > 19.5]
    assert ampel["jd"] == min(deep)
    assert out["last_significant_nondetection_jd"] == max(deep)


def test_an_all_negative_stock_has_no_first_detection_and_says_why(shared_data: Path) -> None:
    """ZTF17aaaaxxm (the night): 4 detections, isdiffpos 'f' in all of them."""
    detections, _ = records(shared_data, "ZTF17aaaaxxm", "night")
    assert [e["isdiffpos"] for e in detections] == ["f", "f", "f", "f"]
    out = summary(shared_data, "ZTF17aaaaxxm")
    assert (out["num_detections"], out["num_negative"]) == (0, 4)
    assert out["first_detection"] is None
    assert out["last_detection"] is None
    assert out["first_detection_reason"] == "all 4 detections are negative subtractions"
    assert out["last_significant_nondetection_jd"] is None
    assert out["last_significant_nondetection_reason"] == "no first detection"
    assert out["magpsf"] is None
    assert out["ra_dis"] is None


def test_negative_subtractions_are_counted_apart_and_never_first_or_last(
    shared_data: Path,
) -> None:
    """ZTF17aaabbbp (the night): 8 detections; the first four (JD 2459525.81 to 2459530.87)
    and the last two (2459540.83 '0', 2459540.91 'f') are negative subtractions, the two on
    2459532 positive. AMPEL's unit would count 8 and start and end on negatives (its first
    detection is the smallest candid, 1771307264315010011, a negative; its latest fields
    those of the last alert's negative candidate)."""
    detections, limits = records(shared_data, "ZTF17aaabbbp", "night")
    signs = [e["isdiffpos"] for e in detections]
    assert signs == ["f", "f", "f", "f", "t", "t", "0", "f"]
    out = summary(shared_data, "ZTF17aaabbbp")
    assert (out["num_detections"], out["num_negative"]) == (2, 6)
    assert out["first_detection"] == 2459532.8055556 == detections[4]["jd"]
    assert out["last_detection"] == 2459532.9238194 == detections[5]["jd"]
    assert out["magpsf"] == pytest.approx(detections[5]["magpsf"], abs=1e-4)
    # the latest positive detection is known from a later alert's history only, which has
    # no drb, sgscore1 or distpsnr1 (AMPEL's .get would give None there too)
    assert out["drb"] is None
    assert out["sgscore1"] is None
    assert out["distpsnr1"] is None
    assert out["distnr"] == pytest.approx(0.34617799520492554, abs=1e-6)
    # the latest deep limit before the first positive detection (AMPEL: before the first
    # negative, and the earliest: 2459517.8435532)
    assert out["last_significant_nondetection_jd"] == 2459523.8466088
    assert out["last_significant_nondetection_fid"] == 1
    assert out["last_significant_nondetection_diffmaglim"] == pytest.approx(20.9836, abs=1e-4)
    ampel = ampel_nondetection(limits, detections[0]["jd"])
    assert ampel is not None
    assert ampel["jd"] == 2459517.8435532


def test_a_stock_without_upper_limits_before_its_first_detection(shared_data: Path) -> None:
    """ZTF17aaadara (the night): 15 positive detections from JD 2460206.9700926; its 3
    upper limits all come later (2460209.99, 2460221.99, 2460223.92)."""
    detections, limits = records(shared_data, "ZTF17aaadara", "night")
    assert len(detections) == 15
    assert {e["isdiffpos"] for e in detections} == {"t"}
    assert [e["jd"] > detections[0]["jd"] for e in limits] == [True, True, True]
    out = summary(shared_data, "ZTF17aaadara")
    assert out["num_detections"] == 15
    assert out["first_detection"] == 2460206.9700926
    assert out["last_detection"] == 2460235.8925
    assert out["last_significant_nondetection_jd"] is None
    assert out["last_significant_nondetection_fid"] is None
    assert out["last_significant_nondetection_reason"] == (
        "no upper limit before the first detection"
    )


def test_shallow_upper_limits_only_are_said_so(shared_data: Path) -> None:
    """ZTF18aabszgd (the night): 10 upper limits before its first detection, none deeper
    than 19.5; with limiting_magnitude 15 the latest of them is taken."""
    out = summary(shared_data, "ZTF18aabszgd")
    assert out["last_significant_nondetection_reason"] == (
        "none of the 10 upper limits before the first detection is fainter than 19.5"
    )
    points = points_by_stock(shared_data / "ztf" / "night")["ZTF18aabszgd"]
    loose = T2LightCurveSummary({"limiting_magnitude": 15}).process(view_of("ZTF18aabszgd", points))
    assert loose["last_significant_nondetection_reason"] is None
    assert loose["last_significant_nondetection_jd"] < loose["first_detection"]


def test_first_and_last_go_by_time_not_by_id(shared_data: Path) -> None:
    """Datapoint ids are hashes: the smallest is not the earliest. Giving every detection
    the body of another (times swapped around) moves first and last with the times."""
    view = view_of(SN, points_by_stock(shared_data / "ztf" / SN)[SN])
    assert view.lightcurve is not None
    detections = view.lightcurve.detections
    by_id = sorted(detections, key=lambda d: d.id)
    assert by_id[0].body["jd"] != detections[0].body["jd"]
    reversed_bodies = [
        dataclasses.replace(d, body=b.body)
        for d, b in zip(detections, reversed(detections), strict=True)
    ]
    out = T2LightCurveSummary().process(T2View(SN, view.subject, tuple(reversed_bodies)))
    assert out["first_detection"] == 2459396.9046875
    assert out["last_detection"] == 2459461.9095255
    assert out["magpsf"] == pytest.approx(15.595422744750977, abs=0)


def test_no_detections_at_all_is_said() -> None:
    out = T2LightCurveSummary().process(T2View("ZTF00aaaaaaa", "s", ()))
    assert out["num_detections"] == out["num_negative"] == 0
    assert out["first_detection"] is None
    assert out["first_detection_reason"] == "no detections"


def test_cols_is_configurable_and_cannot_hide_the_units_own_keys(shared_data: Path) -> None:
    points = points_by_stock(shared_data / "ztf" / SN)[SN]
    out = T2LightCurveSummary({"cols": ["fid", "rb"]}).process(view_of(SN, points))
    latest = records(shared_data, SN, SN)[0][-1]
    assert (out["fid"], out["rb"]) == (1, latest["rb"]) == (1, 0.8285714387893677)
    assert "drb" not in out
    with pytest.raises(ConfigError, match=r"num_detections.*keys of the summary itself"):
        T2LightCurveSummary({"cols": ["num_detections"]})


def test_every_real_ztf_stock_is_deterministic_and_explained(shared_data: Path) -> None:
    """Each stock of the night and the samples: the same bytes in any order and from a
    fresh instance (units.testing.assert_deterministic), and a null first detection always
    comes with its reason."""
    unit = T2LightCurveSummary()
    for folder in ("ztf/night", "ztf/samples", f"ztf/{SN}"):
        for stock, points in sorted(points_by_stock(shared_data / folder).items()):
            assert_deterministic(unit, points)
            out = unit.process(view_of(stock, points))
            assert (out["first_detection"] is None) == (out["first_detection_reason"] is not None)
            assert (out["last_significant_nondetection_jd"] is None) == (
                out["last_significant_nondetection_reason"] is not None
            )


def test_generated_stocks_of_every_survey_are_deterministic() -> None:
    check_determinism(T2LightCurveSummary(), max_examples=10)
