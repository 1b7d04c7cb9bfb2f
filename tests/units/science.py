"""Real data through the built-in science units, cached: shared by the science-unit tests."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from skyledger.units.alerts import Alert, Datapoint
from skyledger.units.combiners import LightCurveCombiner, latest_bodies
from skyledger.units.shapers import shaper_for
from skyledger.units.sources import iter_packets
from skyledger.units.t2 import T2CandidateScore, T2LightCurveFeatures
from skyledger.units.views import LightCurve, StockSummary, T2View

SN = "ZTF21abiuvdk"


@cache
def alerts(folder: Path) -> tuple[Alert, ...]:
    """Return the alerts under ``folder`` in reading order."""
    return tuple(item for item in iter_packets([folder]) if isinstance(item, Alert))


@cache
def points_by_stock(folder: Path) -> dict[str, tuple[Datapoint, ...]]:
    """Return every datapoint shaped from the folder's alerts, per stock, in reading order."""
    found: dict[str, list[Datapoint]] = defaultdict(list)
    for alert in alerts(folder):
        found[alert.stock].extend(shaper_for(alert.survey).shape(alert))
    return {stock: tuple(points) for stock, points in found.items()}


def view_of(stock: str, points: Sequence[Datapoint]) -> T2View:
    """Return the T2 view of the stock's one light-curve state (as the T2 projector builds it)."""
    (state,) = LightCurveCombiner().combine(stock, points)
    unique = {p.id: p for p in latest_bodies(points)}
    dps = tuple(unique[i] for i in state.datapoint_ids)
    return T2View(stock, state.id, dps, LightCurve.of(stock, dps))


def summary_of(stock: str, points: Sequence[Datapoint], channels: tuple[str, ...]) -> StockSummary:
    """Return what a T3 reactor sees of a stock after features and score ran."""
    view = view_of(stock, points)
    features = dict(T2LightCurveFeatures().process(view))
    tied = T2View(
        stock, view.subject, view.datapoints, view.lightcurve, {T2LightCurveFeatures.name: features}
    )
    score = dict(T2CandidateScore().process(tied))
    assert view.lightcurve is not None
    return StockSummary(
        stock,
        channels,
        view.lightcurve,
        {T2LightCurveFeatures.name: features, T2CandidateScore.name: score},
    )


@cache
def candidates(shared_data: Path, extra: int = 4) -> tuple[StockSummary, ...]:
    """Return ZTF21abiuvdk and the ``extra`` night stocks with the most datapoints."""
    sn = points_by_stock(shared_data / "ztf" / SN)[SN]
    night = points_by_stock(shared_data / "ztf" / "night")
    busiest = sorted(night, key=lambda s: (-len(night[s]), s))[:extra]
    summaries = [summary_of(SN, sn, ("SN", "bright"))]
    summaries += [summary_of(s, night[s], ("SN",)) for s in busiest]
    return tuple(summaries)
