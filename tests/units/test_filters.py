"""The ZTF and LSST filters on real alerts: every decision checked against the raw fields."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from skyledger.ledger.errors import ConfigError
from skyledger.units.alerts import Alert
from skyledger.units.filters import LsstFilter, Rejection, ZtfFilter
from skyledger.units.sources import iter_packets
from skyledger.units.views import Decision


@cache
def _alerts(folder: Path) -> tuple[Alert, ...]:
    return tuple(item for item in iter_packets([folder]) if isinstance(item, Alert))


def _expected_ztf(record: Mapping[str, Any]) -> int | None:
    """Return the code the default ZtfFilter must give, read plainly from the record."""
    c = record["candidate"]
    if (
        c["ssdistnr"] is not None
        and 0 <= c["ssdistnr"] <= 12
        and (c["ssmagnr"] is not None and c["ssmagnr"] >= 0)
    ):
        return -3
    if c["isdiffpos"] not in ("t", "1"):
        return -4
    if c["rb"] is None or c["rb"] < 0.3:
        return -5
    if c.get("drb") is not None and c["drb"] < 0.5:
        return -6
    dist, sg = c["distpsnr1"], c["sgscore1"]
    if dist is not None and sg is not None and 0 <= dist < 1.0 and sg > 0.8:
        return -7
    history = record["prv_candidates"] or []
    if 1 + sum(1 for p in history if p["candid"] is not None) < 2:
        return -8
    return None


@pytest.mark.parametrize("folder", ["night", "samples"])
def test_ztf_filter_decides_as_the_fields_say(shared_data: Path, folder: str) -> None:
    alerts = _alerts(shared_data / "ztf" / folder)
    unit = ZtfFilter()
    seen: Counter[int | None] = Counter()
    for alert in alerts:
        decision = unit.decide(alert)
        expected = _expected_ztf(alert.payload)
        assert decision.code == expected, (alert.locator, decision)
        assert decision.accepted is (expected is None)
        assert decision.reason if expected is not None else not decision.reason
        seen[decision.code] += 1
    # the real data exercise (almost) every ZTF cut
    assert {None, -3, -4, -6, -7, -8} <= set(seen)
    if folder == "samples":
        assert seen[-5] == 8  # old alerts with rb < 0.3


def test_ztf_filter_pinned_examples(shared_data: Path) -> None:
    night = _alerts(shared_data / "ztf" / "night")
    unit = ZtfFilter()
    negative = next(a for a in night if a.payload["candidate"]["isdiffpos"] == "f")
    decision = unit.decide(negative)
    assert (decision.accepted, decision.code) == (False, Rejection.NEGATIVE)
    assert "negative subtraction" in decision.reason
    sso = next(a for a in night if a.payload["candidate"]["ssdistnr"] == 0.0)
    assert unit.decide(sso).code == Rejection.SOLAR_SYSTEM
    star = next(
        a
        for a in night
        if 0 <= a.payload["candidate"]["distpsnr1"] < 1
        and a.payload["candidate"]["sgscore1"] > 0.8
        and _expected_ztf(a.payload) == -7
    )
    assert unit.decide(star).code == Rejection.STAR
    assert "sgscore1" in unit.decide(star).reason


def test_ztf_filter_options(shared_data: Path) -> None:
    alerts = _alerts(shared_data / "ztf" / "ZTF21abiuvdk")
    first, last = alerts[0], alerts[-1]
    assert ZtfFilter().decide(first).code == Rejection.TOO_FEW_DETECTIONS  # one detection
    assert ZtfFilter({"group": 3}).decide(last) == Decision.accept(3)
    by_hist = ZtfFilter({"ndet_from": "ndethist", "min_ndet": 200})
    ndethist = last.payload["candidate"]["ndethist"]
    assert by_hist.decide(last).code == Rejection.TOO_FEW_DETECTIONS
    assert str(ndethist) in by_hist.decide(last).reason
    age = last.payload["candidate"]["jd"] - last.payload["candidate"]["jdstarthist"]
    assert ZtfFilter({"max_duration_days": age - 1}).decide(last).code == Rejection.TOO_OLD
    assert ZtfFilter({"max_duration_days": age + 1}).decide(last).accepted
    everything = ZtfFilter(
        {
            "min_rb": None,
            "min_drb": None,
            "require_positive": False,
            "max_sgscore": None,
            "min_ssdistnr_arcsec": None,
            "min_ndet": 0,
        }
    )
    night = _alerts(shared_data / "ztf" / "night")
    assert all(everything.decide(a).accepted for a in night)


def test_ztf_filter_rejects_other_surveys_and_bad_options(shared_data: Path) -> None:
    lsst = _alerts(shared_data / "lsst" / "real")[0]
    assert ZtfFilter().decide(lsst).code == Rejection.WRONG_SURVEY
    ztf = _alerts(shared_data / "ztf" / "ZTF21abiuvdk")[0]
    assert LsstFilter().decide(ztf).code == Rejection.WRONG_SURVEY
    with pytest.raises(ConfigError, match="min_rb"):
        ZtfFilter({"min_rb": 2})
    with pytest.raises(ConfigError, match="rb_min"):
        ZtfFilter({"rb_min": 0.5})


def test_lsst_filter_on_real_rubin_alerts(shared_data: Path) -> None:
    unit = LsstFilter()
    for alert in _alerts(shared_data / "lsst" / "real"):
        source = alert.payload["diaSource"]
        decision = unit.decide(alert)
        if source["ssObjectId"]:  # the two moving objects
            assert decision.code == Rejection.SOLAR_SYSTEM
            assert alert.stock.startswith("lsst-ss:")
        elif source["psfFlux"] <= 0:
            assert decision.code == Rejection.NEGATIVE
        elif source["reliability"] < 0.5:
            assert decision.code == Rejection.REAL_BOGUS
        else:
            assert decision.accepted, decision
            assert len(alert.payload["prvDiaSources"]) >= 1
    codes = Counter(unit.decide(a).code for a in _alerts(shared_data / "lsst" / "real"))
    assert codes == {None: 4, Rejection.SOLAR_SYSTEM: 2, Rejection.NEGATIVE: 1}


def test_lsst_filter_options(shared_data: Path) -> None:
    alerts = _alerts(shared_data / "lsst" / "real")
    accepted = [a for a in alerts if LsstFilter().decide(a).accepted]
    faint = min(
        accepted,
        key=lambda a: a.payload["diaSource"]["psfFlux"] / a.payload["diaSource"]["psfFluxErr"],
    )
    snr = faint.payload["diaSource"]["psfFlux"] / faint.payload["diaSource"]["psfFluxErr"]
    assert LsstFilter({"min_snr": snr + 0.1}).decide(faint).code == Rejection.LOW_SNR
    assert LsstFilter({"min_snr": snr - 0.1}).decide(faint).accepted
    too_many = LsstFilter({"min_ndet": 10_000}).decide(faint)
    assert too_many.code == Rejection.TOO_FEW_DETECTIONS
    times = [faint.payload["diaSource"]["midpointMjdTai"]] + [
        p["midpointMjdTai"] for p in faint.payload["prvDiaSources"]
    ]
    span = max(times) - min(times)
    assert LsstFilter({"max_duration_days": span - 1}).decide(faint).code == Rejection.TOO_OLD
    assert LsstFilter({"group": 1}).decide(faint).group == 1
    # the synthetic schema alerts carry no reliability: rejected unless the cut is off
    fake = _alerts(shared_data / "lsst" / "schema")
    assert {LsstFilter().decide(a).code for a in fake} == {Rejection.REAL_BOGUS}
    assert all(
        LsstFilter({"min_reliability": None, "min_ndet": 1}).decide(a).accepted for a in fake
    )
