"""Shaping of DIA-style alerts (Rubin/LSST and ELAsTiCC), which share one layout.

``diaSource`` and ``prvDiaSources`` are detections (id from ``diaSourceId``),
``prvDiaForcedSources`` forced photometry (id from ``diaForcedSourceId``, in its own
namespace ``<survey>-forced:``) and ``prvDiaNondetectionLimits`` (ELAsTiCC; no Rubin
schema from v9 to v11 has them) upper limits, whose id is made from content:
``(survey, kind, stock, visit or ccdVisitId, jd, band, diaNoise)``. An entry without its
survey id gets a content id from its whole body.

Field names differ by schema generation and are looked up in order: time
``midpointMjdTai`` / ``midPointTai`` (MJD, TAI), band ``band`` / ``filterName``
(lower-cased, so ELAsTiCC's ``Y`` is ``y``), flux ``psfFlux`` / ``psFlux`` and
``psfFluxErr`` / ``psFluxErr`` (nJy). A non-detection's ``limmag`` is the 5-sigma limit
``31.4 - 2.5 log10(5 diaNoise)``.

Superseded photometry: a re-measured source keeps its id with a new body; the ledger keeps
both (the DatapointAdded event identity includes the body) and the combiner takes the
latest received.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skyledger.ledger.ids import datapoint_id
from skyledger.units.alerts import Alert, Datapoint, DatapointKind
from skyledger.units.photometry import jd_from_mjd, limiting_mag, mag_from_flux, number
from skyledger.units.shapers.bodies import content_id, first, records, with_normalised

__all__ = ["shape_dia"]

_TIME = ("midpointMjdTai", "midPointTai")
_BAND = ("band", "filterName")
_FLUX = ("psfFlux", "psFlux")
_FLUXERR = ("psfFluxErr", "psFluxErr")
_VISIT = ("visit", "ccdVisitId")
_LIMIT_SIGMA = 5.0


def shape_dia(alert: Alert, survey: str) -> list[Datapoint]:
    """Return the datapoints of a DIA-style alert, ids namespaced by ``survey``."""
    payload = alert.payload
    stock = alert.stock
    points: list[Datapoint] = []
    source = payload.get("diaSource")
    if isinstance(source, Mapping):
        points.append(_measured(survey, stock, source, "detection"))
    for entry in records(payload.get("prvDiaSources")):
        points.append(_measured(survey, stock, entry, "detection"))
    for entry in records(payload.get("prvDiaForcedSources")):
        points.append(_measured(survey, stock, entry, "forced"))
    for entry in records(payload.get("prvDiaNondetectionLimits")):
        points.append(_upper_limit(survey, stock, entry))
    return points


def _jd(entry: Mapping[str, Any]) -> float | None:
    return jd_from_mjd(first(entry, *_TIME))


def _band(entry: Mapping[str, Any]) -> str | None:
    band = first(entry, *_BAND)
    return band.lower() if isinstance(band, str) else None


def _measured(survey: str, stock: str, entry: Mapping[str, Any], kind: DatapointKind) -> Datapoint:
    flux, fluxerr = number(first(entry, *_FLUX)), number(first(entry, *_FLUXERR))
    mag, magerr = mag_from_flux(flux, fluxerr)
    body = with_normalised(
        entry,
        jd=_jd(entry),
        band=_band(entry),
        mag=mag,
        magerr=magerr,
        flux=flux,
        fluxerr=fluxerr,
    )
    if kind == "forced":
        own_id, namespace = entry.get("diaForcedSourceId"), f"{survey}-forced"
    else:
        own_id, namespace = entry.get("diaSourceId"), survey
    if own_id is None:
        dp_id = content_id(survey, kind, stock, body=body)
    else:
        dp_id = datapoint_id(body, survey_id=f"{namespace}:{own_id}")
    return Datapoint(id=dp_id, stock=stock, kind=kind, body=body)


def _upper_limit(survey: str, stock: str, entry: Mapping[str, Any]) -> Datapoint:
    noise = number(entry.get("diaNoise"))
    limmag = limiting_mag(noise, _LIMIT_SIGMA)
    jd, band = _jd(entry), _band(entry)
    body = with_normalised(entry, jd=jd, band=band, fluxerr=noise, limmag=limmag)
    visit = first(entry, *_VISIT)
    dp_id = content_id(survey, "upper_limit", stock, visit=visit, jd=jd, band=band, diaNoise=noise)
    return Datapoint(id=dp_id, stock=stock, kind="upper_limit", body=body)
