"""LightCurveCombiner on a real growing light curve: one state, each datapoint once."""

from __future__ import annotations

import random
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

from ledger.errors import UnitError
from ledger.ids import state_id
from units.alerts import Alert, Datapoint
from units.combiners import LightCurveCombiner, latest_bodies
from units.shapers import ZtfShaper
from units.sources import iter_packets

STOCK = "ZTF21abiuvdk"


@cache
def _per_alert(folder: Path) -> tuple[tuple[Datapoint, ...], ...]:
    """Return the datapoints shaped from each alert, in reading order."""
    alerts = [a for a in iter_packets([folder]) if isinstance(a, Alert)]
    return tuple(tuple(ZtfShaper().shape(a)) for a in alerts)


def _all(shared_data: Path, name: str = STOCK) -> list[Datapoint]:
    return [dp for dps in _per_alert(shared_data / "ztf" / name) for dp in dps]


def test_one_state_with_every_datapoint_once(shared_data: Path) -> None:
    points = _all(shared_data)
    assert len(points) == 609  # 34 alerts repeat their 30-day history
    states = LightCurveCombiner().combine(STOCK, points)
    assert len(states) == 1
    (state,) = states
    candids = {p.body["candid"] for p in points if p.kind == "detection"}
    limits = {p.id for p in points if p.kind == "upper_limit"}
    assert len(candids) == 34
    assert len(state.datapoint_ids) == len(candids) + len(limits) == 50
    assert state.stock == STOCK
    assert state.id == state_id({p.id for p in points})


def test_the_state_grows_alert_by_alert(shared_data: Path) -> None:
    combiner = LightCurveCombiner({"kinds": ["detection"]})
    known: list[Datapoint] = []
    sizes = []
    for shaped in _per_alert(shared_data / "ztf" / STOCK):
        known.extend(shaped)
        (state,) = combiner.combine(STOCK, known)
        candids = {p.body["candid"] for p in known if p.kind == "detection"}
        assert len(state.datapoint_ids) == len(candids)
        sizes.append(len(state.datapoint_ids))
    assert sizes == sorted(sizes)
    assert sizes[-1] == 34


def test_max_age_keeps_datapoints_near_the_latest_detection(shared_data: Path) -> None:
    points = _all(shared_data)
    latest = max(p.body["jd"] for p in points if p.kind == "detection")
    (state,) = LightCurveCombiner({"max_age_days": 10}).combine(STOCK, points)
    expected = {p.id for p in points if p.body["jd"] >= latest - 10}
    assert set(state.datapoint_ids) == expected
    assert 0 < len(expected) < 50


def test_no_detection_no_state(shared_data: Path) -> None:
    limits = [p for p in _all(shared_data) if p.kind == "upper_limit"]
    assert LightCurveCombiner().combine(STOCK, limits) == []
    assert LightCurveCombiner().combine(STOCK, []) == []


def test_a_remeasured_datapoint_appears_once_with_its_fullest_body(shared_data: Path) -> None:
    points = _all(shared_data)
    first = next(p for p in points if p.kind == "detection")
    again = [p for p in points if p.id == first.id]
    assert len(again) > 1  # ZTF repeats it in later alerts' history ...
    assert len({len(p.body) for p in again}) > 1  # ... with fewer fields
    chosen = {p.id: p for p in latest_bodies(points)}[first.id]
    assert chosen is first  # the alert's own candidate: the most fields, unrounded
    assert len(chosen.body) == max(len(p.body) for p in again)
    (state,) = LightCurveCombiner().combine(STOCK, points)
    assert state.datapoint_ids.count(first.id) == 1


def test_shuffled_input_gives_the_same_states(shared_data: Path) -> None:
    by_stock: dict[str, list[Datapoint]] = defaultdict(list)
    for dp in _all(shared_data, "night"):
        by_stock[dp.stock].append(dp)
    combiner = LightCurveCombiner({"max_age_days": 30})
    rng = random.Random(7)
    for stock, points in sorted(by_stock.items()):
        expected = combiner.combine(stock, points)
        shuffled = list(points)
        rng.shuffle(shuffled)
        assert combiner.combine(stock, shuffled) == expected
        assert all(s.stock == stock for s in expected)


def test_datapoints_of_another_stock_are_refused(shared_data: Path) -> None:
    points = _all(shared_data)
    with pytest.raises(UnitError, match="other stocks"):
        LightCurveCombiner().combine("ZTF00aaaaaaa", points)
