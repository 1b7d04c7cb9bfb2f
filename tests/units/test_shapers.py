"""Shapers on the real alert data: kinds, ids and normalised fields."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any, cast

import fastavro
import pytest
from pydantic import ValidationError

from skyledger.ledger.canonical import canonical_bytes
from skyledger.ledger.errors import UnitError
from skyledger.ledger.ids import datapoint_id
from skyledger.units.alerts import Alert, Datapoint
from skyledger.units.shapers import ElasticcShaper, LsstShaper, ZtfShaper, shaper_for
from skyledger.units.sources import iter_packets

NORMALISED = {"jd", "band", "mag", "magerr", "flux", "fluxerr", "limmag"}


@cache
def _alerts(folder: Path) -> tuple[Alert, ...]:
    return tuple(item for item in iter_packets([folder]) if isinstance(item, Alert))


def _shape(alerts: tuple[Alert, ...]) -> list[Datapoint]:
    return [dp for alert in alerts for dp in shaper_for(alert.survey).shape(alert)]


def _ztf_expected(folder: Path) -> Counter[tuple[str, str]]:
    """Count (stock, kind) from the raw records, read with fastavro alone."""
    expected: Counter[tuple[str, str]] = Counter()
    for path in sorted(folder.rglob("*.avro")):
        with path.open("rb") as handle:
            for raw in fastavro.reader(handle):
                record = cast(dict[str, Any], raw)
                stock = record["objectId"]
                expected[stock, "detection"] += 1
                for entry in record["prv_candidates"] or []:
                    if "forcediffimflux" in entry:
                        expected[stock, "forced"] += 1
                    elif entry["candid"] is None:
                        expected[stock, "upper_limit"] += 1
                    else:
                        expected[stock, "detection"] += 1
    return expected


@pytest.mark.parametrize("folder", ["night", "suspect", "ZTF21abiuvdk", "samples"])
def test_ztf_kinds_per_stock(shared_data: Path, folder: str) -> None:
    root = shared_data / "ztf" / folder
    points = _shape(_alerts(root))
    assert Counter((dp.stock, dp.kind) for dp in points) == _ztf_expected(root)
    for dp in points:
        assert dp.body.keys() >= NORMALISED
        canonical_bytes(dp.body)  # bodies are hashable content: no bytes, no NaN trouble


def test_ztf_detection_and_upper_limit_fields(shared_data: Path) -> None:
    alerts = _alerts(shared_data / "ztf" / "ZTF21abiuvdk")
    alert = alerts[-1]
    points = ZtfShaper().shape(alert)
    candidate = alert.payload["candidate"]
    first = points[0]
    assert first.id == datapoint_id({}, survey_id=f"ztf:{candidate['candid']}")
    assert first.kind == "detection"
    assert first.body["jd"] == candidate["jd"]
    assert first.body["band"] == {1: "g", 2: "r", 3: "i"}[candidate["fid"]]
    assert first.body["mag"] == candidate["magpsf"]
    assert first.body["flux"] == pytest.approx(10 ** (-0.4 * (candidate["magpsf"] - 31.4)))
    ratio = first.body["fluxerr"] / first.body["flux"]
    assert ratio == pytest.approx(candidate["sigmapsf"] / 1.0857, rel=1e-4)
    assert first.body["limmag"] == candidate["diffmaglim"]
    limit = next(dp for dp in points if dp.kind == "upper_limit")
    assert limit.body["mag"] is None
    assert limit.body["flux"] is None
    assert limit.body["limmag"] == limit.body["diffmaglim"]


def test_ztf_negative_difference_has_negative_flux(shared_data: Path) -> None:
    points = _shape(_alerts(shared_data / "ztf" / "night"))
    negative = [dp for dp in points if dp.kind == "detection" and dp.body["isdiffpos"] in "f0"]
    assert negative
    assert all(dp.body["flux"] < 0 < dp.body["mag"] for dp in negative)


def test_ztf21abiuvdk_light_curve_grows_in_candid_order(shared_data: Path) -> None:
    alerts = sorted(_alerts(shared_data / "ztf" / "ZTF21abiuvdk"), key=lambda a: int(a.alert_id))
    assert len(alerts) == 34
    seen: set[str] = set()
    sizes = []
    for alert in alerts:
        seen |= {dp.id for dp in ZtfShaper().shape(alert) if dp.kind == "detection"}
        sizes.append(len(seen))
    assert all(a < b for a, b in itertools.pairwise(sizes))
    candids = {alert.alert_id for alert in alerts}
    for alert in alerts:
        candids |= {str(e["candid"]) for e in alert.payload["prv_candidates"] or [] if e["candid"]}
    assert sizes[-1] == len(candids)


def test_upper_limits_keep_their_id_across_alerts(shared_data: Path) -> None:
    points = _shape(_alerts(shared_data / "ztf" / "ZTF21abiuvdk"))
    limits = [dp for dp in points if dp.kind == "upper_limit"]
    distinct = {dp.id: dp for dp in limits}
    assert len(distinct) < len(limits)
    keys = {(dp.body["jd"], dp.body["pid"], dp.body["diffmaglim"]) for dp in limits}
    assert len(keys) == len(distinct)


def test_superseded_photometry_same_id_other_body(shared_data: Path) -> None:
    """ZTF re-derives history: a candidate reappears in prv_candidates with another body."""
    alerts = sorted(_alerts(shared_data / "ztf" / "ZTF21abiuvdk"), key=lambda a: int(a.alert_id))
    first = ZtfShaper().shape(alerts[0])[0]
    later = {dp.id: dp for dp in ZtfShaper().shape(alerts[1])}
    assert first.id in later
    assert later[first.id].body != first.body


def test_ztf_forced_photometry(shared_data: Path) -> None:
    path = shared_data / "ztf/samples/ztf_avro_alert/forcedphot_test_1660293514215020000.avro"
    (alert,) = [item for item in iter_packets([path]) if isinstance(item, Alert)]
    points = ZtfShaper().shape(alert)
    assert Counter(dp.kind for dp in points) == {"detection": 1, "forced": 18}
    forced = points[1]
    raw = alert.payload["prv_candidates"][0]
    scale = 10 ** (-0.4 * (raw["magzpsci"] - 31.4))
    assert forced.body["flux"] == pytest.approx(raw["forcediffimflux"] * scale)
    assert forced.body["mag"] is None  # negative flux
    assert len({dp.id for dp in points}) == 19
    with_fp = Alert(**{**_fields(alert), "payload": {**alert.payload, "fp_hists": [raw]}})
    assert Counter(dp.kind for dp in ZtfShaper().shape(with_fp)) == {"detection": 1, "forced": 19}


def _fields(alert: Alert) -> dict[str, Any]:
    return {name: getattr(alert, name) for name in Alert.__slots__}


def test_lsst_real_alerts(shared_data: Path) -> None:
    alerts = _alerts(shared_data / "lsst" / "real")
    for alert in alerts:
        payload = alert.payload
        points = LsstShaper().shape(alert)
        prv = payload["prvDiaSources"] or []
        forced = payload["prvDiaForcedSources"] or []
        assert Counter(dp.kind for dp in points) == Counter(
            {"detection": 1 + len(prv), "forced": len(forced)}
        )
        source = payload["diaSource"]
        first = points[0]
        assert first.id == datapoint_id({}, survey_id=f"lsst:{source['diaSourceId']}")
        assert first.body["jd"] == source["midpointMjdTai"] + 2400000.5
        assert first.body["band"] == source["band"]
        flux = source["psfFlux"]
        if flux > 0:
            assert first.body["mag"] == pytest.approx(31.4 - 2.5 * math.log10(flux))
            assert first.body["magerr"] == pytest.approx(1.0857 * source["psfFluxErr"] / flux, 1e-4)
        else:
            assert first.body["mag"] is None
        for dp in points:
            canonical_bytes(dp.body)
            assert not any(isinstance(v, bytes) for v in dp.body.values())
    assert (
        sum(len(LsstShaper().shape(a)) == 1 for a in alerts if a.stock.startswith("lsst-ss:")) == 2
    )


@pytest.mark.parametrize("version", ["v9_0", "v10_0", "v11_0"])
def test_lsst_fake_alerts(shared_data: Path, version: str) -> None:
    (alert,) = _alerts(shared_data / "lsst" / "schema" / version)
    points = LsstShaper().shape(alert)
    assert [dp.kind for dp in points] == ["detection"] * 3
    assert points[0].body["mag"] == pytest.approx(31.4 - 2.5 * math.log10(1241.0))


def test_elasticc(shared_data: Path) -> None:
    alerts = _alerts(shared_data / "elasticc")
    points = _shape(alerts)
    expected: Counter[str] = Counter()
    for alert in alerts:
        expected["detection"] += 1 + len(alert.payload["prvDiaSources"] or [])
        expected["forced"] += len(alert.payload["prvDiaForcedSources"] or [])
    assert Counter(dp.kind for dp in points) == expected
    assert {dp.body["band"] for dp in points} <= set("ugrizy")
    forced = next(dp for dp in points if dp.kind == "forced")
    own = forced.body["diaForcedSourceId"]
    assert forced.id == datapoint_id({}, survey_id=f"elasticc-forced:{own}")


def test_elasticc_nondetection_limits(shared_data: Path) -> None:
    alert = _alerts(shared_data / "elasticc")[0]
    limit = {"ccdVisitId": 7, "midPointTai": 60000.0, "filterName": "Y", "diaNoise": 100.0}
    payload = {**alert.payload, "prvDiaNondetectionLimits": [limit, limit]}
    points = ElasticcShaper().shape(Alert(**{**_fields(alert), "payload": payload}))
    limits = [dp for dp in points if dp.kind == "upper_limit"]
    assert len(limits) == 2
    assert limits[0].id == limits[1].id
    assert limits[0].body["band"] == "y"
    assert limits[0].body["jd"] == 2460000.5
    assert limits[0].body["limmag"] == pytest.approx(31.4 - 2.5 * math.log10(500.0))


def test_nan_becomes_none_and_cutouts_go(shared_data: Path) -> None:
    alert = _alerts(shared_data / "ztf" / "ZTF21abiuvdk")[0]
    candidate = {**alert.payload["candidate"], "magap": float("nan"), "stamp": b"\x00"}
    payload = {**alert.payload, "candidate": candidate}
    body = ZtfShaper().shape(Alert(**{**_fields(alert), "payload": payload}))[0].body
    assert body["magap"] is None
    assert "stamp" not in body


def test_shapers_refuse_other_surveys_and_options(shared_data: Path) -> None:
    alert = _alerts(shared_data / "ztf" / "ZTF21abiuvdk")[0]
    for shaper in (LsstShaper(), ElasticcShaper()):
        with pytest.raises(UnitError, match="cannot shape a ztf alert"):
            shaper.shape(alert)
    with pytest.raises(ValidationError):
        ZtfShaper.Config(zero_point=27.0)  # type: ignore[call-arg]
    assert {ZtfShaper.version, LsstShaper.version, ElasticcShaper.version} == {"1.0"}
    with pytest.raises(KeyError, match="no shaper for survey 'ptf'"):
        shaper_for("ptf")
