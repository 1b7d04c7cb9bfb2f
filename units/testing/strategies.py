"""Hypothesis strategies for alert packets, datapoints, states and light curves of ZTF,
Rubin/LSST and ELAsTiCC, made the way a run makes them.

    from hypothesis import given
    from skyledger.units.testing.strategies import stocks, light_curves

    @given(light_curves("lsst"))
    def test_my_unit_takes_any_lsst_light_curve(curve): ...

A generated stock is a light curve (epochs in time order, in the survey's bands, each a
detection or not) seen through a few alerts, each triggered by a detection and carrying
the history before it as the survey sends it (ZTF: ``candidate`` and
``prv_candidates`` with upper limits; LSST: ``diaSource``, ``prvDiaSources`` and forced
photometry; ELAsTiCC: also ``prvDiaNondetectionLimits``). Each alert is encoded as an
Avro container with a schema in the survey's layout (the fields the built-in shapers
and filters read), decoded by skyledger's own decoder and shaped by the survey's
built-in shaper: the datapoints are those a run would append. Hypothesis shrinks a
failing example towards fewer epochs and rounder values.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

import fastavro
from hypothesis import strategies as st

from skyledger.units.alerts import Alert, Datapoint
from skyledger.units.contracts import Shaper
from skyledger.units.registry import load_unit
from skyledger.units.sources import iter_blob
from skyledger.units.views import LightCurve, State, latest_bodies

__all__ = [
    "SURVEYS",
    "Sample",
    "alert_packets",
    "datapoints",
    "light_curves",
    "states",
    "stocks",
]

Survey = Literal["ztf", "lsst", "elasticc"]
SURVEYS: tuple[Survey, ...] = ("ztf", "lsst", "elasticc")
_SHAPERS = {"ztf": "ZtfShaper", "lsst": "LsstShaper", "elasticc": "ElasticcShaper"}
_BANDS = {"ztf": (1, 2, 3), "lsst": tuple("ugrizy"), "elasticc": tuple("ugrizY")}
_JD0 = 2460000.5  # 2023-02-24
_MJD0 = _JD0 - 2400000.5


@dataclass(frozen=True)
class Sample:
    """One generated stock: its alerts (in the order sent), every datapoint shaped from
    them (a datapoint repeated in later alerts' histories appears again, as in the
    ledger), its state (every datapoint) and its light curve."""

    stock: str
    survey: Survey
    alerts: tuple[Alert, ...]
    datapoints: tuple[Datapoint, ...]

    @property
    def state(self) -> State:
        """Return the state of all the stock's datapoints."""
        return State(self.stock, tuple(d.id for d in self.datapoints))

    @property
    def lightcurve(self) -> LightCurve:
        """Return the light curve of the state (one body per datapoint)."""
        return LightCurve.of(self.stock, latest_bodies(self.datapoints))


@dataclass(frozen=True)
class _Epoch:
    days: float
    band: Any
    detected: bool
    mag: float
    err: float
    limit: float


def _nullable(kind: str) -> list[str]:
    return ["null", kind]


def _record(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": name,
            "fields": [{"name": k, "type": t} for k, t in fields.items()]}  # fmt: skip


_ZTF_CANDIDATE = _record("candidate", {
    "jd": "double", "fid": "int", "pid": "long", "candid": _nullable("long"),
    "magpsf": _nullable("double"), "sigmapsf": _nullable("double"), "diffmaglim": "double",
    "isdiffpos": _nullable("string"), "rb": _nullable("double"), "drb": _nullable("double"),
    "ra": "double", "dec": "double", "programid": "int", "rcid": "int", "field": "int",
    "ndethist": _nullable("int"), "jdstarthist": _nullable("double"),
    "sgscore1": _nullable("double"), "distpsnr1": _nullable("double"),
    "ssdistnr": _nullable("double"), "ssmagnr": _nullable("double"),
    "magzpsci": _nullable("double"),
})  # fmt: skip
_ZTF = {
    "type": "record", "name": "alert", "namespace": "ztf",
    "fields": [
        {"name": "schemavsn", "type": "string"}, {"name": "objectId", "type": "string"},
        {"name": "candid", "type": "long"}, {"name": "candidate", "type": _ZTF_CANDIDATE},
        {"name": "prv_candidates", "type": ["null", {"type": "array", "items": "candidate"}]},
    ],
}  # fmt: skip

_DIA_SOURCE: dict[str, dict[str, Any]] = {
    "lsst": {
        "diaSourceId": "long", "diaObjectId": "long", "midpointMjdTai": "double",
        "band": "string", "psfFlux": "double", "psfFluxErr": "double", "ra": "double",
        "dec": "double", "reliability": _nullable("double"), "ssObjectId": _nullable("long"),
    },
    "elasticc": {
        "diaSourceId": "long", "diaObjectId": "long", "midPointTai": "double",
        "filterName": "string", "psFlux": "double", "psFluxErr": "double", "ra": "double",
        "decl": "double", "snr": "double",
    },
}  # fmt: skip
_DIA_FORCED: dict[str, dict[str, Any]] = {
    "lsst": {"diaForcedSourceId": "long", "diaObjectId": "long", "midpointMjdTai": "double",
             "band": "string", "psfFlux": "double", "psfFluxErr": "double", "visit": "long"},
    "elasticc": {"diaForcedSourceId": "long", "diaObjectId": "long", "midPointTai": "double",
                 "filterName": "string", "psFlux": "double", "psFluxErr": "double"},
}  # fmt: skip
_NONDETECTION = {"ccdVisitId": "long", "midPointTai": "double", "filterName": "string",
                 "diaNoise": "double"}  # fmt: skip


def _dia_schema(survey: Survey) -> dict[str, Any]:
    fields: list[dict[str, Any]] = [
        {"name": "alertId", "type": "long"},
        {"name": "diaSource", "type": _record("diaSource", _DIA_SOURCE[survey])},
        {"name": "prvDiaSources", "type": ["null", {"type": "array", "items": "diaSource"}]},
        {"name": "prvDiaForcedSources",
         "type": ["null", {"type": "array", "items": _record("diaForcedSource",
                                                              _DIA_FORCED[survey])}]},
        {"name": "diaObject", "type": ["null", _record("diaObject", {"diaObjectId": "long"})]},
    ]  # fmt: skip
    if survey == "elasticc":
        limits = {"type": "array", "items": _record("diaNondetectionLimit", _NONDETECTION)}
        fields.append({"name": "prvDiaNondetectionLimits", "type": ["null", limits]})
    namespace = "lsst.v10_0" if survey == "lsst" else "elasticc.v0_9_1"
    return {"type": "record", "name": "alert", "namespace": namespace, "fields": fields}


_SCHEMAS = {
    "ztf": fastavro.parse_schema(_ZTF),
    "lsst": fastavro.parse_schema(_dia_schema("lsst")),
    "elasticc": fastavro.parse_schema(_dia_schema("elasticc")),
}


def _flux(mag: float) -> float:
    """Return the flux in nJy of an AB magnitude."""
    return float(10 ** ((31.4 - mag) / 2.5))


@st.composite
def _epochs(draw: st.DrawFn, survey: Survey, max_points: int) -> list[_Epoch]:
    """Return a light curve's epochs in time order; the last is a detection."""
    days = draw(
        st.lists(st.floats(0.0, 300.0, allow_nan=False).map(lambda d: round(d, 5)),
                 min_size=1, max_size=max_points, unique=True)
    )  # fmt: skip
    epochs = []
    for at in sorted(days):
        epochs.append(_Epoch(
            days=at,
            band=draw(st.sampled_from(_BANDS[survey])),
            detected=draw(st.booleans()),
            mag=draw(st.floats(14.0, 22.5, allow_nan=False).map(lambda m: round(m, 4))),
            err=draw(st.floats(0.005, 0.4, allow_nan=False).map(lambda e: round(e, 4))),
            limit=draw(st.floats(18.0, 23.0, allow_nan=False).map(lambda m: round(m, 3))),
        ))  # fmt: skip
    last = epochs[-1]
    epochs[-1] = _Epoch(last.days, last.band, True, last.mag, last.err, last.limit)
    return epochs


def _ztf_entry(e: _Epoch, index: int, base: int, first_jd: float, ndet: int) -> dict[str, Any]:
    detected = e.detected
    return {
        "jd": _JD0 + e.days, "fid": e.band, "pid": 2000000000 + index, "rcid": index % 64,
        "candid": base + index if detected else None, "field": 600,
        "magpsf": e.mag if detected else None, "sigmapsf": e.err if detected else None,
        "diffmaglim": e.limit, "isdiffpos": "t" if detected else None,
        "rb": 0.9 if detected else None, "drb": 0.99 if detected else None,
        "ra": 150.0, "dec": 2.0, "programid": 1, "ndethist": ndet if detected else None,
        "jdstarthist": first_jd if detected else None, "sgscore1": 0.1, "distpsnr1": 8.0,
        "ssdistnr": None, "ssmagnr": None, "magzpsci": 26.0,
    }  # fmt: skip


def _ztf(stock: str, epochs: list[_Epoch], upto: int, base: int) -> dict[str, Any]:
    seen = epochs[: upto + 1]
    detections = [i for i, e in enumerate(seen) if e.detected]
    first_jd = _JD0 + seen[detections[0]].days
    entries = [_ztf_entry(e, i, base, first_jd, len(detections)) for i, e in enumerate(seen)]
    return {"schemavsn": "4.02", "objectId": stock, "candid": base + upto,
            "candidate": entries[-1], "prv_candidates": entries[:-1] or None}  # fmt: skip


def _dia(survey: Survey, obj: int, epochs: list[_Epoch], upto: int, base: int) -> dict[str, Any]:
    lsst = survey == "lsst"
    time_key, band_key = ("midpointMjdTai", "band") if lsst else ("midPointTai", "filterName")
    flux_key = "psfFlux" if survey == "lsst" else "psFlux"
    seen = epochs[: upto + 1]

    def source(i: int, e: _Epoch) -> dict[str, Any]:
        flux = _flux(e.mag)
        row: dict[str, Any] = {
            "diaSourceId": base + i, "diaObjectId": obj, time_key: _MJD0 + e.days,
            band_key: e.band, flux_key: flux, f"{flux_key}Err": flux * e.err * 0.921,
            "ra": 150.0,
        }  # fmt: skip
        if survey == "lsst":
            row |= {"dec": 2.0, "reliability": 0.9, "ssObjectId": None}
        else:
            row |= {"decl": 2.0, "snr": 1.0 / max(e.err * 0.921, 1e-6)}
        return row

    def forced(i: int, e: _Epoch) -> dict[str, Any]:
        noise = _flux(e.limit) / 5.0
        row: dict[str, Any] = {
            "diaForcedSourceId": base + 10_000 + i, "diaObjectId": obj,
            time_key: _MJD0 + e.days, band_key: e.band, flux_key: noise * 0.3,
            f"{flux_key}Err": noise,
        }  # fmt: skip
        if survey == "lsst":
            row["visit"] = 7000 + i
        return row

    sources = [source(i, e) for i, e in enumerate(seen) if e.detected]
    payload: dict[str, Any] = {
        "alertId": base + upto, "diaSource": sources[-1], "prvDiaSources": sources[:-1] or None,
        "prvDiaForcedSources": [forced(i, e) for i, e in enumerate(seen) if not e.detected]
        or None,
        "diaObject": {"diaObjectId": obj},
    }  # fmt: skip
    if survey == "elasticc":
        payload["prvDiaNondetectionLimits"] = [
            {"ccdVisitId": 9000 + i, "midPointTai": _MJD0 + e.days - 0.01, "filterName": e.band,
             "diaNoise": _flux(e.limit) / 5.0}
            for i, e in enumerate(seen) if not e.detected
        ] or None  # fmt: skip
    return payload


def _encode(survey: Survey, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, _SCHEMAS[survey], [record])
    return out.getvalue()


def _decode(data: bytes, locator: str) -> Alert:
    [alert] = list(iter_blob(data, locator))
    if not isinstance(alert, Alert):
        raise AssertionError(f"a generated packet did not decode: {alert.reason}")
    return alert


@st.composite
def stocks(
    draw: st.DrawFn, survey: Survey = "ztf", max_points: int = 20, max_alerts: int = 3
) -> Sample:
    """Return a generated stock of a survey (see the module docstring)."""
    if survey not in SURVEYS:
        raise ValueError(f"survey {survey!r}: one of {', '.join(SURVEYS)}")
    epochs = draw(_epochs(survey, max_points))
    detected = [i for i, e in enumerate(epochs) if e.detected]
    sent = draw(st.lists(st.sampled_from(detected), max_size=max_alerts - 1, unique=True))
    alert_at = sorted({*sent, len(epochs) - 1})
    number = draw(st.integers(1, 999_999))
    base = draw(st.integers(10**15, 10**16))
    shaper = load_unit(_SHAPERS[survey])()
    assert isinstance(shaper, Shaper)
    alerts, points = [], []
    for k, upto in enumerate(alert_at):
        if survey == "ztf":
            record = _ztf(f"ZTF24{number:07d}"[:12], epochs, upto, base)
        else:
            record = _dia(survey, number, epochs, upto, base)
        alert = _decode(_encode(survey, record), f"generated:{survey}#{k}")
        alerts.append(alert)
        points += shaper.shape(alert)
    return Sample(alerts[0].stock, survey, tuple(alerts), tuple(points))


def alert_packets(survey: Survey = "ztf", max_points: int = 20) -> st.SearchStrategy[Alert]:
    """Return a strategy of decoded alert packets (the stock's latest alert)."""
    return stocks(survey, max_points).map(lambda s: s.alerts[-1])


def datapoints(survey: Survey = "ztf", max_points: int = 20) -> st.SearchStrategy[list[Datapoint]]:
    """Return a strategy of one stock's datapoints, as its alerts' shaping made them."""
    return stocks(survey, max_points).map(lambda s: list(s.datapoints))


def states(survey: Survey = "ztf", max_points: int = 20) -> st.SearchStrategy[State]:
    """Return a strategy of states (every datapoint of a generated stock)."""
    return stocks(survey, max_points).map(lambda s: s.state)


def light_curves(survey: Survey = "ztf", max_points: int = 20) -> st.SearchStrategy[LightCurve]:
    """Return a strategy of light curves of generated stocks."""
    return stocks(survey, max_points).map(lambda s: s.lightcurve)
