"""The determinism harness of units.testing: every built-in unit passes it on generated
ZTF, LSST and ELAsTiCC stocks, and units that are not deterministic (order-dependent,
stateful, hash-seeded) fail it with the smallest input that shows it. (A T2 unit cannot
depend on the order of its datapoints: its view holds them sorted by id.)"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any, ClassVar

import pytest
from hypothesis import find, given, settings

from skyledger.units import Reaction, Reactor, Source, StockSummary, T2Unit, T2View, Unit, load_unit
from skyledger.units.testing import check_determinism
from skyledger.units.testing.strategies import (
    SURVEYS,
    alert_packets,
    datapoints,
    light_curves,
    stocks,
)

CONFIGS: dict[str, dict[str, Any]] = {
    "FileSource": {"paths": ["."]},
    "SimulatedSource": {"paths": ["."]},
    "KafkaSource": {"bootstrap_servers": "127.0.0.1:9", "topics": ["t"]},
    "ReportReactor": {"path": "report.html"},
    "WebhookReactor": {"url": "http://127.0.0.1:9/hook"},
}
BUILT_IN = sorted(
    ep.name for ep in entry_points(group="skyledger.units")
    if ep.dist is not None and ep.dist.name == "skyledger"
)  # fmt: skip


def test_the_built_in_units_are_the_ones_checked() -> None:
    assert {"ZtfShaper", "ZtfFilter", "LightCurveCombiner", "T2LightCurveFeatures",
            "ReportReactor"} <= set(BUILT_IN)  # fmt: skip


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_unit_is_deterministic(name: str) -> None:
    unit = load_unit(name)(CONFIGS.get(name, {}))
    if isinstance(unit, Source):
        with pytest.raises(TypeError, match="sources read the world outside"):
            check_determinism(unit)
        return
    check_determinism(unit)


@pytest.mark.parametrize("survey", SURVEYS)
def test_the_strategies_make_what_a_run_makes(survey: str) -> None:
    @settings(max_examples=15, deadline=None, database=None)
    @given(stocks(survey), alert_packets(survey), datapoints(survey), light_curves(survey))  # type: ignore[arg-type]
    def made(sample: Any, alert: Any, points: Any, curve: Any) -> None:
        assert alert.survey == survey
        assert all(a.survey == survey and a.stock == sample.stock for a in sample.alerts)
        assert sample.datapoints
        assert {d.stock for d in sample.datapoints} == {sample.stock}
        assert sample.lightcurve.detections  # every alert is triggered by a detection
        assert sample.state.datapoint_ids == tuple(sorted({d.id for d in sample.datapoints}))
        assert points
        assert curve.detections

    made()


class FirstStock(Reactor):
    """Not deterministic: its reaction names whichever stock it was given first."""

    version: ClassVar[str] = "1"
    scope: ClassVar[Any] = "selection"

    def react(self, stocks: Iterable[StockSummary]) -> list[Reaction]:
        return [Reaction(target="x", key=f"first:{stocks[0].stock}", payload={})]


class Counter(T2Unit):
    """Not deterministic: it counts its calls."""

    version: ClassVar[str] = "1"
    binds: ClassVar[Any] = "state"

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.calls = 0

    def process(self, view: T2View) -> Mapping[str, Any]:
        self.calls += 1
        return {"calls": self.calls}


class Hashed(T2Unit):
    """Not deterministic: Python's string hash changes with each process's seed."""

    version: ClassVar[str] = "1"
    binds: ClassVar[Any] = "state"

    def process(self, view: T2View) -> Mapping[str, Any]:
        return {"bucket": hash(view.stock) % 1000}


def failure(unit: Unit, other_process: bool = True) -> AssertionError:
    with pytest.raises(AssertionError) as caught:
        check_determinism(unit, surveys=["ztf"], max_examples=30, max_points=5,
                          other_process=other_process)  # fmt: skip
    return caught.value


def test_an_order_dependent_unit_fails_on_the_smallest_reordering() -> None:
    error = failure(FirstStock(), other_process=False)  # shrinking needs no second process
    assert "not deterministic (the inputs in another order)" in str(error)
    notes = "\n".join(getattr(error, "__notes__", []))
    assert "Failing test case" in notes or "Falsifying example" in notes  # by version
    assert notes.count("StockSummary(") == 4  # two stocks (the smallest), then reordered


def test_a_unit_keeping_state_fails() -> None:
    error = failure(Counter())
    assert "not deterministic (a second instance, same configuration)" in str(error)


def test_a_unit_on_the_hash_seed_fails_in_another_process() -> None:
    error = failure(Hashed())
    assert "not deterministic (another process)" in str(error)


def test_a_deterministic_unit_passes_without_the_other_process_too() -> None:
    check_determinism(load_unit("T2CandidateScore")(), surveys=["lsst"], other_process=False)


def test_an_unknown_survey_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="survey 'hst': one of ztf, lsst, elasticc"):
        find(stocks("hst"), lambda sample: True)  # type: ignore[arg-type]
