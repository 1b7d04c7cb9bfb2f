"""LightCurveCombiner on a real growing light curve: one state, each datapoint once."""

from __future__ import annotations

import random
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

from skyledger.ledger.errors import UnitError
from skyledger.ledger.ids import state_id
from skyledger.units.alerts import Alert, Datapoint
from skyledger.units.combiners import LightCurveCombiner, alert_time, latest_bodies
from skyledger.units.shapers import ZtfShaper
from skyledger.units.sources import iter_packets
from skyledger.units.views import State

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


def test_a_state_at_an_alert_holds_nothing_observed_after_it(shared_data: Path) -> None:
    # The whole light curve is known (as when later alerts arrived first); the state at
    # the 10th alert keeps what was observed up to its candidate's jd, and counts the rest.
    per_alert = _per_alert(shared_data / "ztf" / STOCK)
    points = [dp for dps in per_alert for dp in dps]
    at = per_alert[9][0].body["jd"]  # the 10th alert's candidate
    (state,) = LightCurveCombiner().combine(STOCK, points, at)
    unique = {p.id: p for p in latest_bodies(points)}
    before = {i for i, p in unique.items() if p.body["jd"] <= at}
    assert set(state.datapoint_ids) == before
    assert state.until == at
    assert state.set_aside == {"observed_after": len(unique) - len(before)}
    (received,) = LightCurveCombiner({"history": "received"}).combine(STOCK, points, at)
    assert set(received.datapoint_ids) == set(unique)  # the rule before 0.6
    assert received.until is None
    assert received.set_aside == {}
    (whenever,) = LightCurveCombiner().combine(STOCK, points)  # no time given: no cut
    assert whenever.datapoint_ids == received.datapoint_ids


def test_one_detection_per_exposure(shared_data: Path) -> None:
    # ZTF18abckozp's latest night alert carries four candidates of one exposure (jd
    # 2459537.8261574, readout channel 49), and other exposures twice or three times.
    points = [p for p in _all(shared_data, "night") if p.stock == "ZTF18abckozp"]
    one = LightCurveCombiner().combine("ZTF18abckozp", points)[0]
    every = LightCurveCombiner({"one_per_exposure": False}).combine("ZTF18abckozp", points)[0]
    bodies = {p.id: p.body for p in latest_bodies(points)}
    kept = {bodies[i]["candid"] for i in one.datapoint_ids if bodies[i].get("candid")}
    all_candids = {bodies[i]["candid"] for i in every.datapoint_ids if bodies[i].get("candid")}
    siblings = {1783326154915015009, 1783326154915015010, 1783326154915015011,
                1783326154915015012}  # fmt: skip
    assert siblings <= all_candids
    assert kept & siblings == {1783326154915015012}  # the highest candid, as AMPEL keeps
    exposures = defaultdict(set)
    for candid in all_candids:
        body = next(b for b in bodies.values() if b.get("candid") == candid)
        exposures[(body["jd"], body["rcid"])].add(candid)
    assert kept == {max(c) for c in exposures.values()}
    assert one.set_aside == {"same_exposure": len(all_candids) - len(kept)}
    assert len(all_candids) - len(kept) >= 10
    assert every.set_aside == {}


def test_alert_time_is_the_alerts_own_measurement(shared_data: Path) -> None:
    per_alert = _per_alert(shared_data / "ztf" / STOCK)
    points = [dp for dps in per_alert for dp in dps]
    own = per_alert[3]
    candid = str(own[0].body["candid"])
    assert alert_time(candid, own, points) == own[0].body["jd"]
    # Its own datapoints all came first with another alert: its candid still gives it.
    assert alert_time(candid, [], points) == own[0].body["jd"]
    assert alert_time(None, [], points) is None


def test_kinds_choose_what_a_state_holds_not_whether_it_is_made(shared_data: Path) -> None:
    # A state of upper limits only is made while the stock has a detection by then, and
    # counts what it left out among the kinds it holds only.
    per_alert = _per_alert(shared_data / "ztf" / STOCK)
    points = [dp for dps in per_alert for dp in dps]
    at = per_alert[9][0].body["jd"]
    (state,) = LightCurveCombiner({"kinds": ["upper_limit"]}).combine(STOCK, points, at)
    limits = {p.id: p for p in latest_bodies(points) if p.kind == "upper_limit"}
    assert set(state.datapoint_ids) == {i for i, p in limits.items() if p.body["jd"] <= at}
    assert state.set_aside == {"observed_after": sum(p.body["jd"] > at for p in limits.values())}
    assert hash(state) == hash(State(STOCK, state.datapoint_ids, until=at))  # still hashable
