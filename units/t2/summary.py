"""T2LightCurveSummary: AMPEL's summary of a light curve, with two corrections.

The number of detections, the first and the last (by time), the position of the first,
fields of the latest detection's body (``cols``) and the last significant non-detection
before the first detection: an upper limit fainter than ``limiting_magnitude``.

Detections are the positive ones: a negative subtraction
(``units.photometry.negative_difference``: negative flux, ZTF ``isdiffpos`` ``f``/``0``)
is counted apart, in ``num_negative``, and is never the first or last detection; when
there is no first detection, ``first_detection_reason`` says why. Detections are ordered
by (jd, datapoint id), not by their survey ids, and the non-detection is the latest
qualifying upper limit before the first detection (AMPEL's view order makes its unit
report the earliest). Every key is always present (null when unknown). See
``docs/units.md`` for every key and each difference from AMPEL's unit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import Field, field_validator

from skyledger.units.alerts import Datapoint
from skyledger.units.base import UnitConfig
from skyledger.units.contracts import T2Binding, T2Unit
from skyledger.units.photometry import negative_difference, number
from skyledger.units.t2.features import negative_only
from skyledger.units.views import T2View, curve_of

__all__ = ["AMPEL_COLS", "T2LightCurveSummary"]

AMPEL_COLS = ("drb", "ra", "dec", "magpsf", "sgscore1", "distnr", "distpsnr1")
"""AMPEL's default ``cols``: ZTF fields of the latest detection's body."""
_NONDET = "last_significant_nondetection"
_KEYS = (
    "num_detections",
    "num_negative",
    "first_detection",
    "first_detection_reason",
    "last_detection",
    "ra_dis",
    "dec_dis",
    f"{_NONDET}_jd",
    f"{_NONDET}_fid",
    f"{_NONDET}_band",
    f"{_NONDET}_diffmaglim",
    f"{_NONDET}_reason",
)


class T2LightCurveSummary(T2Unit):
    """Summarises a light curve: detections, first and last, latest fields, last deep limit."""

    version: ClassVar[str] = "1.0"
    binds: ClassVar[T2Binding] = "lightcurve"
    ranks: ClassVar[tuple[str, ...]] = ("num_detections", "first_detection", "last_detection")

    class Config(UnitConfig):
        """Options of the summary (AMPEL's names and defaults)."""

        cols: tuple[str, ...] = Field(
            AMPEL_COLS,
            description="fields of the latest detection's body to copy into the result "
            "(null where the body has none)",
        )
        limiting_magnitude: float = Field(
            19.5,
            description="an upper limit is significant when its limiting magnitude (ZTF "
            "diffmaglim) is greater (fainter) than this",
        )

        @field_validator("cols")
        @classmethod
        def _not_own_keys(cls, cols: tuple[str, ...]) -> tuple[str, ...]:
            taken = sorted(set(cols) & set(_KEYS))
            if taken:
                raise ValueError(f"{taken} are keys of the summary itself, not body fields")
            return cols

    config: Config

    def process(self, view: T2View) -> Mapping[str, Any]:
        """Return the summary of the view's light curve (JSON-compatible, no NaN)."""
        curve = curve_of(view)
        dated = [d for d in curve.detections if number(d.body.get("jd")) is not None]
        positive = [d for d in dated if not negative_difference(d.body)]
        out: dict[str, Any] = dict.fromkeys(_KEYS)
        out.update(dict.fromkeys(self.config.cols))
        out["num_detections"] = len(positive)
        out["num_negative"] = len(dated) - len(positive)
        if not positive:
            out["first_detection_reason"] = _no_detection(len(curve.detections), len(dated))
            out[f"{_NONDET}_reason"] = "no first detection"
            return out
        first, latest = positive[0].body, positive[-1].body  # sorted by (jd, id)
        out["first_detection"] = float(first["jd"])
        out["last_detection"] = float(latest["jd"])
        out["ra_dis"], out["dec_dis"] = _plain(first.get("ra")), _plain(first.get("dec"))
        for col in self.config.cols:
            out[col] = _plain(latest.get(col))
        out.update(self._nondetection(curve.upper_limits, out["first_detection"]))
        return out

    def _nondetection(self, limits: Sequence[Datapoint], before: float) -> dict[str, Any]:
        """Return the latest upper limit before ``before`` fainter than the limiting
        magnitude (jd, fid, band, limiting magnitude), or why there is none."""
        earlier = [
            d for d in limits if (jd := number(d.body.get("jd"))) is not None and jd < before
        ]
        cut = self.config.limiting_magnitude
        deep = [
            d for d in earlier if (lim := number(d.body.get("limmag"))) is not None and lim > cut
        ]
        if not deep:
            return {f"{_NONDET}_reason": _no_nondetection(len(earlier), cut)}
        body = deep[-1].body  # upper limits are sorted by (jd, id): the latest
        return {
            f"{_NONDET}_jd": float(body["jd"]),
            f"{_NONDET}_fid": _plain(body.get("fid")),
            f"{_NONDET}_band": _plain(body.get("band")),
            f"{_NONDET}_diffmaglim": number(body.get("limmag")),
        }


def _no_detection(n_detections: int, n_dated: int) -> str:
    """Return why a light curve has no first (positive, dated) detection."""
    if n_detections == 0:
        return "no detections"
    if n_dated == 0:
        return f"none of the {n_detections} detections has a time (jd)"
    return negative_only(n_dated)


def _no_nondetection(n_earlier: int, cut: float) -> str:
    """Return why there is no significant upper limit before the first detection."""
    if n_earlier == 0:
        return "no upper limit before the first detection"
    if n_earlier == 1:
        return f"the only upper limit before the first detection is not fainter than {cut}"
    return f"none of the {n_earlier} upper limits before the first detection is fainter than {cut}"


def _plain(value: Any) -> Any:
    """Return a body value as the result holds it: a float that is not finite is null."""
    if isinstance(value, float):
        return number(value)
    return value
