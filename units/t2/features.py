"""T2LightCurveFeatures: per-band peak, timing, rise and decline rates, colour and a Bazin fit.

Magnitude features use the detections of a band that have a magnitude and are not
negative subtractions (``units.photometry.negative_difference``: a ZTF negative
subtraction has a positive ``magpsf`` that is not the source's brightness): ``ndet``
counts those, ``n_negative`` the negative subtractions, and ``first_jd_reason`` says why
there is no ``first_jd`` (all detections negative, say). The Bazin fit uses every
detection of the band with a flux and a positive flux error. Everything is computed from
inputs sorted by (jd, id), so the result does not depend on the order of the datapoints.
See ``docs/units.md`` for every key.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import light_curve as lc
import numpy as np
from pydantic import BaseModel, Field

from skyledger.units.alerts import Datapoint
from skyledger.units.base import UnitConfig
from skyledger.units.contracts import T2Binding, T2Unit
from skyledger.units.photometry import negative_difference, number
from skyledger.units.views import LightCurve, T2View, curve_of

__all__ = ["T2LightCurveFeatures", "negative_only"]

BazinAlgorithm = Literal["mcmc-lmsder", "lmsder", "mcmc", "ceres", "mcmc-ceres"]
Point = tuple[float, float, float]  # (jd, value, error)
_BAZIN_KEYS = ("amplitude", "baseline", "reference_time", "rise_time", "fall_time", "reduced_chi2")
_BAND_KEYS = (
    "ndet",
    "peak_mag",
    "peak_magerr",
    "peak_jd",
    "first_jd",
    "last_jd",
    "duration",
    "amplitude",
    "last_limit_jd",
    "last_limit_mag",
    "rise_rate",
    "rise_rate_err",
    "rise_npoints",
    "decline_rate",
    "decline_rate_err",
    "decline_npoints",
    "bazin",
    "bazin_reason",
)
_LINEAR_FIT = lc.LinearFit()
_AMPLITUDE = lc.Amplitude()


class T2LightCurveFeatures(T2Unit):
    """Derives light-curve features per band, the colour at peak and a Bazin fit per band."""

    version: ClassVar[str] = "1.1"
    binds: ClassVar[T2Binding] = "lightcurve"
    ranks: ClassVar[tuple[str, ...]] = ("ndet", "duration", "peak.mag", "color.value")

    class Config(UnitConfig):
        """Options of the light-curve features."""

        color_bands: tuple[str, str] = Field(
            ("g", "r"), description="the two bands of the colour (first minus second)"
        )
        color_window_days: float = Field(
            1.0, gt=0, description="largest time between the two detections of a colour pair"
        )
        min_rate_points: int = Field(
            2, ge=2, description="fewest points on a side of the peak for a rise/decline rate"
        )
        bazin: bool = Field(True, description="fit a Bazin function per band (on flux)")
        bazin_algorithm: BazinAlgorithm = Field(
            "mcmc-lmsder",
            description="light_curve BazinFit algorithm; the MCMC ones use a fixed seed "
            "inside light_curve and are deterministic",
        )
        bazin_min_points: int = Field(
            6, ge=6, description="fewest detections in a band to try a Bazin fit (>= 6)"
        )

    config: Config

    def __init__(self, config: BaseModel | Mapping[str, Any] | None = None) -> None:
        """Validate the configuration and build the Bazin fitter once."""
        super().__init__(config)
        self._bazin = lc.BazinFit(self.config.bazin_algorithm)

    def process(self, view: T2View) -> Mapping[str, Any]:
        """Return the features of the view's light curve (JSON-compatible, no NaN)."""
        curve = curve_of(view)
        per_band = {band: self._band(curve, band) for band in curve.bands()}
        positive = [_mag_points(curve.detections, b) for b in per_band]
        times = sorted(p[0] for points in positive for p in points)
        peak = _overall_peak(curve)
        n_negative = sum(1 for d in curve.detections if negative_difference(d.body))
        return {
            "ndet": len(times),
            "n_negative": n_negative,
            "n_upper_limits": len(curve.upper_limits),
            "n_forced": len(curve.forced),
            "bands": sorted(per_band),
            "first_jd": times[0] if times else None,
            "first_jd_reason": None if times else _no_first(curve, n_negative),
            "last_jd": times[-1] if times else None,
            "duration": times[-1] - times[0] if times else None,
            "peak": peak,
            "color": self._color(curve, per_band),
            "per_band": per_band,
        }

    def _band(self, curve: LightCurve, band: str) -> dict[str, Any]:
        """Return the features of one band."""
        cfg = self.config
        points = _mag_points(curve.detections, band)
        out: dict[str, Any] = dict.fromkeys(_BAND_KEYS)
        out["ndet"] = len(points)
        if points:
            jd, mag, err = (np.array(col) for col in zip(*points, strict=True))
            p = int(np.argmin(mag))  # first of equal minima: points are sorted by time
            before = [
                (float(d.body["jd"]), float(d.body["limmag"]))
                for d in curve.upper_limits
                if d.body.get("band") == band
                and _finite(d.body.get("limmag"))
                and _finite(d.body.get("jd"))
                and d.body["jd"] < jd[0]
            ]
            rise = _rate(jd[: p + 1], mag[: p + 1], err[: p + 1], cfg.min_rate_points)
            decline = _rate(jd[p:], mag[p:], err[p:], cfg.min_rate_points)
            out.update(
                peak_mag=float(mag[p]),
                peak_magerr=float(err[p]),
                peak_jd=float(jd[p]),
                first_jd=float(jd[0]),
                last_jd=float(jd[-1]),
                duration=float(jd[-1] - jd[0]),
                amplitude=_half_amplitude(jd, mag),
                last_limit_jd=before[-1][0] if before else None,
                last_limit_mag=before[-1][1] if before else None,
                rise_rate=None if rise[0] is None else -rise[0],
                rise_rate_err=rise[1],
                rise_npoints=p + 1,
                decline_rate=decline[0],
                decline_rate_err=decline[1],
                decline_npoints=len(jd) - p,
            )
        if cfg.bazin:
            out["bazin"], out["bazin_reason"] = self._fit_bazin(_flux_points(curve, band))
        else:
            out["bazin_reason"] = "not asked for (bazin: false)"
        return out

    def _fit_bazin(self, points: list[Point]) -> tuple[dict[str, Any] | None, str | None]:
        """Return the Bazin parameters (flux in nJy, times in jd and days), or why not."""
        n, need = len(points), self.config.bazin_min_points
        if n < need:
            return None, f"too few points: {n} detections with flux, need {need}"
        jd, flux, err = (np.array(col, dtype=np.float64) for col in zip(*points, strict=True))
        t0, scale = float(jd[0]), float(np.max(np.abs(flux)))
        if scale == 0:
            return None, "all fluxes are zero"
        try:
            values = self._bazin(jd - t0, flux / scale, err / scale, sorted=True)
        except ValueError as exc:
            return None, f"fit failed: {exc}"
        params = dict(zip(_BAZIN_KEYS, (float(v) for v in values), strict=True))
        if not all(math.isfinite(v) for v in params.values()):
            return None, "fit failed: parameters are not finite"
        params["amplitude"] *= scale
        params["baseline"] *= scale
        params["reference_time"] += t0
        params["npoints"] = n
        return params, None

    def _color(self, curve: LightCurve, per_band: Mapping[str, Any]) -> dict[str, Any]:
        """Return the colour of the configured bands near the peak of the second band."""
        first, second = self.config.color_bands
        out: dict[str, Any] = {"bands": [first, second], "value": None, "jd": None, "dt": None}
        a, b = _mag_points(curve.detections, first), _mag_points(curve.detections, second)
        if not a or not b:
            return {**out, "reason": f"no detection in {first if not a else second}"}
        ref_band = second if per_band.get(second, {}).get("peak_jd") is not None else first
        t_ref = float(per_band[ref_band]["peak_jd"])
        b_times = [p[0] for p in b]
        best: tuple[float, float, float, float] | None = None
        best_pair: tuple[Point, Point] | None = None
        for pa in a:
            pb = _nearest(b, b_times, pa[0])
            dt = abs(pa[0] - pb[0])
            if dt > self.config.color_window_days:
                continue
            key = (abs((pa[0] + pb[0]) / 2 - t_ref), dt, pa[0], pb[0])
            if best is None or key < best:
                best, best_pair = key, (pa, pb)
        if best is None or best_pair is None:
            window = self.config.color_window_days
            return {**out, "reason": f"no {first}/{second} pair within {window} d"}
        pa, pb = best_pair
        return {
            **out,
            "value": pa[1] - pb[1],
            "jd": (pa[0] + pb[0]) / 2,
            "dt": best[1],
            "offset_from_peak": best[0],
            "reason": None,
        }


def _no_first(curve: LightCurve, n_negative: int) -> str:
    """Return why a light curve has no first detection for the magnitude features."""
    n = len(curve.detections)
    if n == 0:
        return "no detections"
    if n_negative == n:
        return negative_only(n)
    return f"no detection with a magnitude and a time ({n} detections, {n_negative} negative)"


def negative_only(n: int) -> str:
    """Return the reason given for a light curve whose ``n`` detections are all negative."""
    if n == 1:
        return "the only detection is a negative subtraction"
    return f"all {n} detections are negative subtractions"


def _finite(value: Any) -> bool:
    return number(value) is not None


def _mag_points(detections: Sequence[Datapoint], band: str) -> list[Point]:
    """Return (jd, mag, magerr) of a band's detections with a magnitude that are not
    negative subtractions."""
    out = []
    for d in detections:
        body = d.body
        jd, mag = number(body.get("jd")), number(body.get("mag"))
        if body.get("band") == band and jd is not None and mag is not None:
            if negative_difference(body):
                continue
            out.append((jd, mag, number(body.get("magerr")) or 0.0))
    return out


def _flux_points(curve: LightCurve, band: str) -> list[Point]:
    """Return (jd, flux, fluxerr) of a band's detections with a flux and a positive error."""
    out = []
    for d in curve.detections:
        body = d.body
        jd, flux, err = (
            number(body.get("jd")),
            number(body.get("flux")),
            number(body.get("fluxerr")),
        )
        if body.get("band") == band and jd is not None and flux is not None and (err or 0) > 0:
            out.append((jd, flux, float(err or 0)))
    return out


def _overall_peak(curve: LightCurve) -> dict[str, Any] | None:
    """Return the brightest detection over all bands: band, mag and jd."""
    points = [
        (p[1], p[0], band) for band in curve.bands() for p in _mag_points(curve.detections, band)
    ]
    if not points:
        return None
    mag, jd, band = min(points)
    return {"band": band, "mag": mag, "jd": jd}


def _half_amplitude(jd: np.ndarray[Any, Any], mag: np.ndarray[Any, Any]) -> float:
    """Return half the magnitude range (light_curve's Amplitude)."""
    return float(_AMPLITUDE(jd, mag, sorted=True)[0])


def _rate(
    jd: np.ndarray[Any, Any], mag: np.ndarray[Any, Any], err: np.ndarray[Any, Any], need: int
) -> tuple[float | None, float | None]:
    """Return the slope (mag/day) and its error from a linear fit, or (None, None)."""
    n = len(jd)
    if n < need or jd[-1] == jd[0]:
        return None, None
    if n == 2:
        dt = float(jd[1] - jd[0])
        return float(mag[1] - mag[0]) / dt, math.hypot(float(err[0]), float(err[1])) / dt
    sigma = err if bool(np.all(err > 0)) else None
    slope, slope_err, _ = (float(v) for v in _LINEAR_FIT(jd - jd[0], mag, sigma, sorted=True))
    if not (math.isfinite(slope) and math.isfinite(slope_err)):
        return None, None
    return slope, slope_err


def _nearest(points: Sequence[Point], times: Sequence[float], t: float) -> Point:
    """Return the point nearest in time to ``t`` (the earlier one on a tie)."""
    i = bisect_left(times, t)
    candidates = [points[j] for j in (i - 1, i) if 0 <= j < len(points)]
    return min(candidates, key=lambda p: (abs(p[0] - t), p[0]))
