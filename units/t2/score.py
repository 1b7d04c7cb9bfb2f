"""T2CandidateScore: how supernova-like a light curve is, from T2LightCurveFeatures.

Each criterion gives a value in [0, 1]; the score is their weighted mean, where an
unknown criterion (too little data to say) counts as a neutral 0.5:

    score = sum(w_i * c_i) / sum(w_i),   c_i = 0.5 when criterion i is unknown

| criterion     | measured on (the primary band, see below)        | c = 1 inside, 0 outside   |
|---------------|--------------------------------------------------|---------------------------|
| rise_time     | peak_jd - first_jd (unknown if peak is first)    | trapezoid rise_time_days  |
| decline_rate  | decline rate after peak, mag/day                 | trapezoid decline_rate    |
| duration      | last - first detection over all bands, days      | trapezoid duration_days   |
| amplitude     | max(2 x half amplitude, recent limit - peak mag) | ramp amplitude_mag        |
| color         | g - r near peak, mag                             | trapezoid color_mag       |
| bazin         | Bazin fit: amplitude > 0, 0 < rise < fall        | 1 or 0 (see below)        |

The Bazin criterion is 1 when the fit of the primary band has a positive amplitude and
``0 < rise_time < fall_time``, with ``rise_time <= bazin_max_rise_days`` and
``fall_time <= bazin_max_fall_days``, else 0. A trapezoid ``(a, b, c, d)`` is 0 below
``a``, rises linearly to 1 at ``b``, stays 1 to ``c`` and falls to 0 at ``d``; a ramp
``(a, b)`` is 0 below ``a`` and 1 above ``b``. The primary band is the band with the most
detections (ties: ``band_preference``). The amplitude counts the last upper limit before
the first detection only when it is at most ``limit_window_days`` older. A light curve
without any detection scores 0.
The unit ranks nothing: T3 reactors rank by the score.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, field_validator

from skyledger.ledger.errors import UnitError
from skyledger.units.base import UnitConfig
from skyledger.units.contracts import T2Binding, T2Unit
from skyledger.units.views import T2View

__all__ = ["T2CandidateScore", "ramp", "trapezoid"]

CRITERIA = ("rise_time", "decline_rate", "duration", "amplitude", "color", "bazin")
NEUTRAL = 0.5


def trapezoid(x: float, edges: tuple[float, float, float, float]) -> float:
    """Return the trapezoid membership of ``x`` for edges ``(a, b, c, d)``."""
    a, b, c, d = edges
    if x <= a or x >= d:
        return 0.0
    if x < b:
        return (x - a) / (b - a)
    if x > c:
        return (d - x) / (d - c)
    return 1.0


def ramp(x: float, edges: tuple[float, float]) -> float:
    """Return 0 below ``a``, 1 above ``b`` and linear in between for edges ``(a, b)``."""
    a, b = edges
    return min(1.0, max(0.0, (x - a) / (b - a)))


class T2CandidateScore(T2Unit):
    """Scores how supernova-like a candidate is, from its light-curve features."""

    version: ClassVar[str] = "1.0"
    binds: ClassVar[T2Binding] = "state"  # needs only its dependency's result
    depends_on: ClassVar[tuple[str, ...]] = ("T2LightCurveFeatures",)
    ranks: ClassVar[tuple[str, ...]] = ("score",)

    class Config(UnitConfig):
        """Options of the score: the SN-like ranges of each criterion and their weights."""

        rise_time_days: tuple[float, float, float, float] = Field(
            (0.5, 3.0, 30.0, 70.0), description="trapezoid of the rise time to peak, days"
        )
        decline_rate: tuple[float, float, float, float] = Field(
            (0.0, 0.01, 0.12, 0.35), description="trapezoid of the decline rate, mag/day"
        )
        duration_days: tuple[float, float, float, float] = Field(
            (1.0, 8.0, 150.0, 400.0), description="trapezoid of the detected duration, days"
        )
        amplitude_mag: tuple[float, float] = Field(
            (0.2, 1.0), description="ramp of the brightening amplitude, mag"
        )
        limit_window_days: float = Field(
            30.0,
            ge=0,
            description="an upper limit at most this long before the first detection "
            "counts towards the amplitude",
        )
        color_mag: tuple[float, float, float, float] = Field(
            (-0.8, -0.3, 0.6, 1.2), description="trapezoid of the colour near peak, mag"
        )
        bazin_max_rise_days: float = Field(
            50.0, gt=0, description="longest Bazin rise time (tau_rise) called SN-like, days"
        )
        bazin_max_fall_days: float = Field(
            200.0, gt=0, description="longest Bazin fall time (tau_fall) called SN-like, days"
        )
        weights: dict[str, float] = Field(
            default_factory=lambda: dict.fromkeys(CRITERIA, 1.0),
            description=f"weight of each criterion ({', '.join(CRITERIA)}); missing: 0",
        )
        band_preference: tuple[str, ...] = Field(
            ("r", "g", "i", "z", "y", "u"),
            description="order in which bands with equally many detections are preferred",
        )

        @field_validator("rise_time_days", "decline_rate", "duration_days", "color_mag")
        @classmethod
        def _increasing4(
            cls, edges: tuple[float, float, float, float]
        ) -> tuple[float, float, float, float]:
            if not edges[0] < edges[1] <= edges[2] < edges[3]:
                raise ValueError(f"edges must satisfy a < b <= c < d, got {edges}")
            return edges

        @field_validator("amplitude_mag")
        @classmethod
        def _increasing2(cls, edges: tuple[float, float]) -> tuple[float, float]:
            if not edges[0] < edges[1]:
                raise ValueError(f"edges must satisfy a < b, got {edges}")
            return edges

        @field_validator("weights")
        @classmethod
        def _known(cls, weights: dict[str, float]) -> dict[str, float]:
            unknown = sorted(set(weights) - set(CRITERIA))
            if unknown:
                raise ValueError(f"unknown criteria {unknown}; known: {', '.join(CRITERIA)}")
            if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
                raise ValueError("weights must be non-negative and not all zero")
            return weights

    config: Config

    def process(self, view: T2View) -> Mapping[str, Any]:
        """Return ``{"score", "band", "components", "reasons"}`` from the features."""
        features = view.dependencies.get("T2LightCurveFeatures")
        if features is None:
            msg = "T2CandidateScore needs the T2LightCurveFeatures result of the same subject"
            raise UnitError(msg, unit=self.name)
        if not features.get("ndet"):
            return {"score": 0.0, "band": None, "components": {}, "reasons": ["no detections"]}
        band = self._primary_band(features)
        measured = self._measure(features, band)
        weights = self.config.weights
        total = weight_sum = 0.0
        components: dict[str, float | None] = {}
        reasons: list[str] = []
        for name in CRITERIA:
            value, what = measured[name]
            components[name] = value
            reasons.append(f"{what}: {NEUTRAL if value is None else value:.2f}")
            weight = weights.get(name, 0.0)
            total += weight * (NEUTRAL if value is None else value)
            weight_sum += weight
        score = min(1.0, max(0.0, total / weight_sum))
        return {"score": score, "band": band, "components": components, "reasons": reasons}

    def _primary_band(self, features: Mapping[str, Any]) -> str:
        """Return the band with the most detections (ties: the preference order)."""
        per_band: Mapping[str, Any] = features.get("per_band") or {}
        order = {b: i for i, b in enumerate(self.config.band_preference)}
        ranked = sorted(
            per_band, key=lambda b: (-int(per_band[b].get("ndet") or 0), order.get(b, 99), b)
        )
        return ranked[0]

    def _measure(
        self, features: Mapping[str, Any], band: str
    ) -> dict[str, tuple[float | None, str]]:
        """Return each criterion's value (None if unknown) and what it was measured on."""
        cfg = self.config
        f = features["per_band"][band]
        out: dict[str, tuple[float | None, str]] = {}
        rise = None if (f.get("rise_npoints") or 0) < 2 else f["peak_jd"] - f["first_jd"]
        out["rise_time"] = (
            (None, f"rise time in {band} unknown (peak at first detection)")
            if rise is None
            else (trapezoid(rise, cfg.rise_time_days), f"rise time {rise:.1f} d in {band}")
        )
        decline = f.get("decline_rate")
        out["decline_rate"] = (
            (None, f"decline rate in {band} unknown")
            if decline is None
            else (trapezoid(decline, cfg.decline_rate), f"decline {decline:.3f} mag/d in {band}")
        )
        duration = features.get("duration")
        out["duration"] = (
            (None, "duration unknown")
            if duration is None
            else (trapezoid(duration, cfg.duration_days), f"duration {duration:.1f} d")
        )
        amplitude = 2 * float(f.get("amplitude") or 0.0)
        limit_jd, limit_mag = f.get("last_limit_jd"), f.get("last_limit_mag")
        if limit_mag is not None and f["first_jd"] - limit_jd <= cfg.limit_window_days:
            amplitude = max(amplitude, limit_mag - f["peak_mag"])
        out["amplitude"] = (ramp(amplitude, cfg.amplitude_mag), f"amplitude {amplitude:.2f} mag")
        color = features.get("color") or {}
        value, pair = color.get("value"), "-".join(color.get("bands") or ["?", "?"])
        out["color"] = (
            (None, f"{pair} colour unknown")
            if value is None
            else (trapezoid(value, cfg.color_mag), f"{pair} = {value:.2f} mag near peak")
        )
        out["bazin"] = self._bazin(f.get("bazin"), band)
        return out

    def _bazin(self, fit: Mapping[str, Any] | None, band: str) -> tuple[float | None, str]:
        """Return 1 for a supernova-shaped Bazin fit, 0 for another shape, None for no fit."""
        if fit is None:
            return None, f"no Bazin fit in {band}"
        rise, fall = fit["rise_time"], fit["fall_time"]
        ok = (
            fit["amplitude"] > 0
            and 0 < rise < fall
            and rise <= self.config.bazin_max_rise_days
            and fall <= self.config.bazin_max_fall_days
        )
        shape = "SN-like" if ok else "not SN-like"
        text = f"Bazin in {band}: rise {rise:.1f} d, fall {fall:.1f} d, {shape}"
        return (1.0 if ok else 0.0), text
