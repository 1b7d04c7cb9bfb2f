"""T2CandidateScore: the documented formula, on real features and on made-up shapes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from skyledger.ledger.canonical import canonical_bytes
from skyledger.ledger.errors import ConfigError, UnitError
from skyledger.units.shapers import ZtfShaper
from skyledger.units.t2 import T2CandidateScore, T2LightCurveFeatures
from skyledger.units.t2.score import CRITERIA, ramp, trapezoid
from skyledger.units.views import T2View
from tests.units.science import SN, alerts, points_by_stock, view_of


def _features(points: Any) -> dict[str, Any]:
    return dict(T2LightCurveFeatures().process(view_of(SN, points)))


def _score(features: dict[str, Any], config: dict[str, Any] | None = None) -> dict[str, Any]:
    view = T2View(SN, "subject", (), None, {"T2LightCurveFeatures": features})
    return dict(T2CandidateScore(config).process(view))


def test_shapes_of_the_membership_functions() -> None:
    edges = (0.0, 1.0, 3.0, 5.0)
    assert [trapezoid(x, edges) for x in (-1, 0, 0.5, 1, 2, 3, 4, 5, 6)] == [
        0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0,
    ]  # fmt: skip
    assert [ramp(x, (0.2, 1.0)) for x in (0.0, 0.6, 2.0)] == [0.0, pytest.approx(0.5), 1.0]


def test_the_supernova_scores_high_by_the_documented_formula(shared_data: Path) -> None:
    features = _features(points_by_stock(shared_data / "ztf" / SN)[SN])
    out = _score(features)
    assert out["band"] == "g"  # 18 detections in g, 16 in r
    assert set(out["components"]) == set(CRITERIA)
    assert len(out["reasons"]) == len(CRITERIA)
    values = [0.5 if v is None else v for v in out["components"].values()]
    assert out["score"] == pytest.approx(sum(values) / len(values))
    assert out["score"] > 0.9
    g = features["per_band"]["g"]
    assert out["components"]["rise_time"] == trapezoid(
        g["peak_jd"] - g["first_jd"], (0.5, 3.0, 30.0, 70.0)
    )
    assert any(r.startswith("rise time 15.0 d in g") for r in out["reasons"])


def test_a_young_candidate_has_neutral_unknowns(shared_data: Path) -> None:
    shaper = ZtfShaper()
    first_two = [p for a in alerts(shared_data / "ztf" / SN)[:2] for p in shaper.shape(a)]
    out = _score(_features(first_two))
    unknown = [name for name, value in out["components"].items() if value is None]
    assert "bazin" in unknown
    assert any("unknown" in r or "no Bazin" in r for r in out["reasons"])
    assert 0 < out["score"] < 1


def test_a_slow_red_variable_scores_low() -> None:
    band = {
        "ndet": 40,
        "peak_mag": 17.0,
        "peak_jd": 2459300.0,
        "first_jd": 2459000.0,
        "last_jd": 2459600.0,
        "amplitude": 0.05,
        "rise_npoints": 20,
        "decline_rate": 0.001,
        "last_limit_mag": None,
        "bazin": {"amplitude": 1e4, "rise_time": 80.0, "fall_time": 20.0},
    }
    features = {
        "ndet": 40,
        "duration": 600.0,
        "per_band": {"r": band},
        "color": {"bands": ["g", "r"], "value": 1.6},
    }
    out = _score(features)
    assert out["score"] < 0.1
    assert out["components"]["bazin"] == 0.0
    assert out["components"]["color"] == 0.0


def test_weights_and_edge_options(shared_data: Path) -> None:
    features = _features(points_by_stock(shared_data / "ztf" / SN)[SN])
    only_colour = _score(features, {"weights": {"color": 1.0}})
    assert only_colour["score"] == only_colour["components"]["color"]
    strict = _score(features, {"decline_rate": (0.2, 0.3, 0.4, 0.5)})
    assert strict["components"]["decline_rate"] == 0.0
    with pytest.raises(ConfigError, match="rise_time_days"):
        T2CandidateScore({"rise_time_days": (5, 1, 2, 3)})
    with pytest.raises(ConfigError, match="unknown criteria"):
        T2CandidateScore({"weights": {"redshift": 1.0}})


def test_needs_its_dependency_and_detections() -> None:
    with pytest.raises(UnitError, match="T2LightCurveFeatures"):
        T2CandidateScore().process(T2View(SN, "subject", ()))
    assert _score({"ndet": 0, "per_band": {}})["score"] == 0.0


def test_deterministic_whatever_the_key_order(shared_data: Path) -> None:
    features = _features(points_by_stock(shared_data / "ztf" / SN)[SN])
    reordered = copy.deepcopy(features)
    reordered["per_band"] = dict(reversed(list(reordered["per_band"].items())))
    reordered = dict(reversed(list(reordered.items())))
    assert canonical_bytes(_score(features)) == canonical_bytes(_score(reordered))
