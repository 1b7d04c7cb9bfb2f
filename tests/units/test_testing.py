"""The shipped test kit: what unit authors use to test their units."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from skyledger.ledger import UnitError
from skyledger.units import T2Binding, T2Unit, T2View
from skyledger.units.t2.features import T2LightCurveFeatures
from skyledger.units.testing import assert_deterministic, datapoints_from, run_unit, view_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "ztf" / "ZTF21abiuvdk"


class CountsBands(T2Unit):
    def process(self, view: T2View) -> Mapping[str, Any]:
        assert view.lightcurve is not None
        return {"bands": view.lightcurve.bands(), "n": len(view.lightcurve.detections)}


class ReturnsNumpy(T2Unit):
    binds: ClassVar[T2Binding] = "state"

    def process(self, view: T2View) -> Mapping[str, Any]:
        return {"mean": np.float64(1.5), "points": {1, 2}}


class KeepsState(T2Unit):
    """Impure: remembers how often it ran (a class attribute survives new instances)."""

    binds: ClassVar[T2Binding] = "state"
    calls: ClassVar[int] = 0

    def process(self, view: T2View) -> Mapping[str, Any]:
        KeepsState.calls += 1
        return {"n": len(view.datapoints), "calls": KeepsState.calls}


def test_real_alerts_become_one_stocks_datapoints() -> None:
    points = datapoints_from(EXAMPLE)
    assert {p.stock for p in points} == {"ZTF21abiuvdk"}
    assert {p.kind for p in points} == {"detection", "upper_limit"}


def test_run_unit_gives_the_stored_result() -> None:
    result = run_unit(CountsBands(), datapoints_from(EXAMPLE))
    assert result == {"bands": ["g", "r"], "n": 34}  # 34 distinct detections, not 600 copies


def test_the_view_follows_the_binding() -> None:
    points = datapoints_from(EXAMPLE)
    assert view_for(CountsBands(), points).lightcurve is not None
    assert view_for(ReturnsNumpy(), points).lightcurve is None
    assert len(view_for(ReturnsNumpy(), points).subject) == 32  # a state id


def test_results_the_ledger_cannot_store_fail_in_the_test() -> None:
    with pytest.raises(UnitError, match="ReturnsNumpy returned a result the ledger cannot store"):
        run_unit(ReturnsNumpy(), datapoints_from(EXAMPLE))


def test_the_built_in_features_are_deterministic() -> None:
    assert_deterministic(T2LightCurveFeatures(), datapoints_from(EXAMPLE))


def test_a_unit_that_is_not_deterministic_is_caught() -> None:
    with pytest.raises(AssertionError, match="KeepsState is not deterministic"):
        assert_deterministic(KeepsState(), datapoints_from(EXAMPLE))
