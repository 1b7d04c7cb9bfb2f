"""Photometry: magnitudes, fluxes and times, as every datapoint body holds them.

Shapers write each survey's photometry into the same keys of every datapoint body
(:func:`units.shapers.bodies.with_normalised`), each None when unknown:

* ``jd``: the time of the measurement, a Julian date;
* ``band``: the filter, lower case (``g``, ``r``, ``i``, ``u``, ``z``, ``y``);
* ``mag``, ``magerr``: AB magnitude and its error;
* ``flux``, ``fluxerr``: difference flux in nJy (negative for a negative difference);
* ``limmag``: limiting magnitude (5 sigma).

Fluxes are in nJy and magnitudes AB with the zero point 31.4 (``m = 31.4 - 2.5 log10 f``);
the magnitude error is ``2.5 / ln 10 * ferr / f`` (about ``1.0857 * ferr / f``).

Shapers, combiners, filters, T2 and T3 units share these helpers: read a value as a
number, convert between magnitudes and fluxes, between JD and MJD, and turn a light
curve into rows and a summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from skyledger.units.views import LightCurve

__all__ = [
    "MAG_PER_LN",
    "MJD_TO_JD",
    "ZERO_POINT_NJY",
    "flux_from_mag",
    "flux_scale",
    "jd_from_mjd",
    "lightcurve_rows",
    "lightcurve_summary",
    "limiting_mag",
    "mag_from_flux",
    "mjd_from_jd",
    "negative_difference",
    "number",
]

ZERO_POINT_NJY = 31.4
"""AB magnitude of a flux of 1 nJy."""
MAG_PER_LN = 2.5 / math.log(10)
"""Magnitudes per unit of natural log of flux: ``magerr = MAG_PER_LN * fluxerr / flux``."""
MJD_TO_JD = 2400000.5
"""A modified Julian date plus this is a Julian date."""


def number(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None (for None, NaN, bools and non-numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def negative_difference(body: Mapping[str, Any]) -> bool:
    """Return whether a detection is a negative subtraction: the source was fainter than in
    the reference image. Its flux is negative, or ZTF's ``isdiffpos`` says so (``"f"`` or
    ``"0"``, also when the body has no flux). Its ``mag`` (ZTF ``magpsf``) is then
    positive but measures the flux lost, not the source's brightness."""
    flux = number(body.get("flux"))
    if flux is not None and flux < 0:
        return True
    return str(body.get("isdiffpos", "")).lower() in ("f", "0")


def mag_from_flux(flux: Any, fluxerr: Any) -> tuple[float | None, float | None]:
    """Return (mag, magerr) for a flux in nJy; (None, None) when the flux is not positive."""
    f = number(flux)
    if f is None or f <= 0:
        return None, None
    ferr = number(fluxerr)
    magerr = None if ferr is None else MAG_PER_LN * ferr / f
    return ZERO_POINT_NJY - 2.5 * math.log10(f), magerr


def flux_from_mag(
    mag: Any, magerr: Any, *, negative: bool = False
) -> tuple[float | None, float | None]:
    """Return (flux, fluxerr) in nJy for an AB magnitude; negative for a negative difference."""
    m = number(mag)
    if m is None:
        return None, None
    flux = 10 ** (-0.4 * (m - ZERO_POINT_NJY))
    merr = number(magerr)
    fluxerr = None if merr is None else flux * merr / MAG_PER_LN
    return (-flux if negative else flux), fluxerr


def flux_scale(zero_point: float) -> float:
    """Return the factor that turns a flux measured against the AB magnitude zero point
    ``zero_point`` (``m = zero_point - 2.5 log10 flux``, as ZTF's ``magzpsci``) into nJy."""
    return 10 ** (-0.4 * (zero_point - ZERO_POINT_NJY))


def limiting_mag(noise: Any, sigma: float = 5.0) -> float | None:
    """Return the AB magnitude of ``sigma`` times a flux noise in nJy (the ``sigma``-sigma
    limiting magnitude), or None when the noise is not a positive number."""
    n = number(noise)
    if n is None or n <= 0:
        return None
    return ZERO_POINT_NJY - 2.5 * math.log10(sigma * n)


def jd_from_mjd(mjd: Any) -> float | None:
    """Return the Julian date of a modified Julian date, or None if it is not a number."""
    m = number(mjd)
    return None if m is None else m + MJD_TO_JD


def mjd_from_jd(jd: float) -> float:
    """Return the modified Julian date of a Julian date."""
    return jd - MJD_TO_JD


def lightcurve_rows(curve: LightCurve) -> list[dict[str, Any]]:
    """Return the light curve as JSON rows (jd, band, kind, mag, magerr, limmag), by time.

    Datapoints without a time are left out; a missing band is ``"?"``. Rows are sorted by
    (jd, kind, band, mag, limmag), so the same datapoints give the same rows.
    """
    rows = []
    for dp in (*curve.detections, *curve.upper_limits, *curve.forced):
        body = dp.body
        jd = number(body.get("jd"))
        if jd is None:
            continue
        rows.append(
            {
                "jd": jd,
                "band": str(body.get("band") or "?"),
                "kind": dp.kind,
                "mag": number(body.get("mag")),
                "magerr": number(body.get("magerr")),
                "limmag": number(body.get("limmag")),
            }
        )
    rows.sort(key=lambda r: (r["jd"], r["kind"], r["band"], r["mag"] or 0.0, r["limmag"] or 0.0))
    return rows


def lightcurve_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Return what :func:`lightcurve_rows` show in brief: the number of detections with a
    magnitude (``ndet``), their bands, first and last detection time, and the brightest
    and the latest detection (jd, band, mag)."""
    detections = [r for r in rows if r["kind"] == "detection" and r["mag"] is not None]
    if not detections:
        return {"ndet": 0, "bands": [], "first_jd": None, "last_jd": None}
    brightest = min(detections, key=lambda r: (r["mag"], r["jd"]))
    latest = detections[-1]
    return {
        "ndet": len(detections),
        "bands": sorted({r["band"] for r in detections}),
        "first_jd": detections[0]["jd"],
        "last_jd": latest["jd"],
        "brightest": {k: brightest[k] for k in ("jd", "band", "mag")},
        "latest": {k: latest[k] for k in ("jd", "band", "mag")},
    }
