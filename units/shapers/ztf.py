"""The ZTF shaper: a ZTF alert becomes detections, upper limits and forced photometry.

* ``candidate`` and every ``prv_candidates`` entry with a ``candid`` are detections, id
  ``datapoint_id({}, survey_id=f"ztf:{candid}")``.
* ``prv_candidates`` entries without a ``candid`` are upper limits. ZTF gives them no id;
  theirs is made from content like AMPEL's (time, readout channel, limiting magnitude):
  ``(survey, kind, stock, jd, fid, pid, rcid, diffmaglim)``. ``pid`` names the exposure
  and CCD quadrant. The stock is included because a skyledger datapoint belongs to one
  stock, and nearby objects on one image share jd, pid and diffmaglim.
* ``fp_hists`` entries (schema 4.x) and ``prv_candidates`` entries that carry
  ``forcediffimflux`` (the schema-3.5 forced-photometry test packet) are forced
  photometry, id ``(survey, kind, stock, jd, fid, pid, field, rcid)``: the flux is
  measured at the stock's position, so the stock is part of the identity.

Superseded photometry: ZTF re-derives history entries, so one ``candid`` can arrive with
another body (``prv_candidates`` hold fewer fields, rounded values and ``isdiffpos``
``"1"`` instead of ``"t"``). It keeps its datapoint id; the ledger keeps both bodies (the
DatapointAdded event identity includes the body) and the combiner takes the latest received.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from skyledger.ledger.errors import UnitError
from skyledger.ledger.ids import datapoint_id
from skyledger.units.alerts import Alert, Datapoint
from skyledger.units.base import UnitConfig
from skyledger.units.contracts import Shaper
from skyledger.units.photometry import flux_from_mag, flux_scale, mag_from_flux, number
from skyledger.units.shapers.bodies import content_id, records, with_normalised

__all__ = ["ZTF_BANDS", "ZtfShaper"]

ZTF_BANDS: dict[int, str] = {1: "g", 2: "r", 3: "i"}
_MISSING_FLUX = -99999.0
_NEGATIVE = ("f", "0")


class ZtfShaper(Shaper):
    """Turns a ZTF alert (schema 1.8 to 4.02, Fink-written or not) into datapoints."""

    version: ClassVar[str] = "1.0"
    survey: ClassVar[str] = "ztf"

    class Config(UnitConfig):
        """The ZTF shaper has no options."""

    def shape(self, alert: Alert) -> list[Datapoint]:
        """Return the alert's candidate, history and forced photometry as datapoints."""
        if alert.survey != "ztf":
            msg = f"ZtfShaper cannot shape a {alert.survey} alert ({alert.locator})"
            raise UnitError(msg, unit="ZtfShaper")
        payload = alert.payload
        stock = alert.stock
        points: list[Datapoint] = []
        candidate = payload.get("candidate")
        if isinstance(candidate, Mapping):
            points.append(_detection(stock, candidate))
        for entry in records(payload.get("prv_candidates")):
            if "forcediffimflux" in entry:
                points.append(_forced(stock, entry))
            elif entry.get("candid") is not None:
                points.append(_detection(stock, entry))
            else:
                points.append(_upper_limit(stock, entry))
        points.extend(_forced(stock, entry) for entry in records(payload.get("fp_hists")))
        return points


def _band(entry: Mapping[str, Any]) -> str | None:
    fid = entry.get("fid")
    return ZTF_BANDS.get(fid) if isinstance(fid, int) else None


def _detection(stock: str, entry: Mapping[str, Any]) -> Datapoint:
    negative = str(entry.get("isdiffpos", "t")).lower() in _NEGATIVE
    mag, magerr = number(entry.get("magpsf")), number(entry.get("sigmapsf"))
    flux, fluxerr = flux_from_mag(mag, magerr, negative=negative)
    body = with_normalised(
        entry,
        jd=number(entry.get("jd")),
        band=_band(entry),
        mag=mag,
        magerr=magerr,
        flux=flux,
        fluxerr=fluxerr,
        limmag=number(entry.get("diffmaglim")),
    )
    dp_id = datapoint_id(body, survey_id=f"ztf:{entry['candid']}")
    return Datapoint(id=dp_id, stock=stock, kind="detection", body=body)


def _upper_limit(stock: str, entry: Mapping[str, Any]) -> Datapoint:
    jd, limmag = number(entry.get("jd")), number(entry.get("diffmaglim"))
    body = with_normalised(entry, jd=jd, band=_band(entry), limmag=limmag)
    keys = {k: entry.get(k) for k in ("fid", "pid", "rcid")}
    dp_id = content_id("ztf", "upper_limit", stock, jd=jd, diffmaglim=limmag, **keys)
    return Datapoint(id=dp_id, stock=stock, kind="upper_limit", body=body)


def _forced(stock: str, entry: Mapping[str, Any]) -> Datapoint:
    """Return forced photometry; DN fluxes are scaled to nJy with ``magzpsci``."""
    jd, zero_point = number(entry.get("jd")), number(entry.get("magzpsci"))
    raw, raw_err = number(entry.get("forcediffimflux")), number(entry.get("forcediffimfluxunc"))
    flux = fluxerr = None
    if zero_point is not None and raw is not None and raw != _MISSING_FLUX:
        scale = flux_scale(zero_point)
        flux = raw * scale
        if raw_err is not None and raw_err != _MISSING_FLUX:
            fluxerr = raw_err * scale
    mag, magerr = mag_from_flux(flux, fluxerr)
    body = with_normalised(
        entry,
        jd=jd,
        band=_band(entry),
        mag=mag,
        magerr=magerr,
        flux=flux,
        fluxerr=fluxerr,
        limmag=number(entry.get("diffmaglim")),
    )
    keys = {k: entry.get(k) for k in ("fid", "pid", "field", "rcid")}
    dp_id = content_id("ztf", "forced", stock, jd=jd, **keys)
    return Datapoint(id=dp_id, stock=stock, kind="forced", body=body)
