"""T0 filters for ZTF and LSST: the usual quality cuts, each rejection with its own code.

A filter looks at the new detection of one alert (ZTF ``candidate``, LSST ``diaSource``)
and its history in the same packet. Checks run in the order of the table below and the
first that fails decides. Every cut can be switched off by setting its option to null.

| code | name               | ZtfFilter rejects when              | LsstFilter rejects when        |
|------|--------------------|-------------------------------------|--------------------------------|
| -1   | WRONG_SURVEY       | not a ZTF alert                     | not an LSST alert              |
| -2   | NO_DETECTION       | no candidate record                 | no diaSource record            |
| -3   | SOLAR_SYSTEM       | known SSO within min_ssdistnr       | ssObjectId, or no diaObjectId  |
| -4   | NEGATIVE           | isdiffpos not t/1                   | psfFlux not positive           |
| -5   | REAL_BOGUS         | rb missing or below min_rb          | reliability missing or low     |
| -6   | DEEP_REAL_BOGUS    | drb below min_drb                   | (not used)                     |
| -7   | STAR               | PS1 star within star_radius_arcsec  | (not used)                     |
| -8   | TOO_FEW_DETECTIONS | fewer than min_ndet detections      | fewer than min_ndet diaSources |
| -9   | TOO_OLD            | jd - jdstarthist > max duration     | detections span > max duration |
| -10  | LOW_SNR            | (not used)                          | psfFlux / psfFluxErr < min_snr |

An accepted alert goes into ``group`` when one is configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any, ClassVar, Literal

from pydantic import Field

from skyledger.units.alerts import Alert
from skyledger.units.base import UnitConfig
from skyledger.units.contracts import Filter
from skyledger.units.photometry import number
from skyledger.units.shapers.bodies import records
from skyledger.units.views import Decision

__all__ = ["CODES", "LsstFilter", "Rejection", "ZtfFilter"]


class Rejection(IntEnum):
    """Rejection codes of the built-in filters (see the module docstring)."""

    WRONG_SURVEY = -1
    NO_DETECTION = -2
    SOLAR_SYSTEM = -3
    NEGATIVE = -4
    REAL_BOGUS = -5
    DEEP_REAL_BOGUS = -6
    STAR = -7
    TOO_FEW_DETECTIONS = -8
    TOO_OLD = -9
    LOW_SNR = -10


CODES: dict[int, str] = {
    Rejection.WRONG_SURVEY: "an alert of another survey",
    Rejection.NO_DETECTION: "no detection in the alert",
    Rejection.SOLAR_SYSTEM: "a known solar-system object nearby",
    Rejection.NEGATIVE: "a negative difference (the source faded)",
    Rejection.REAL_BOGUS: "real/bogus score below the minimum",
    Rejection.DEEP_REAL_BOGUS: "deep-learning real/bogus score below the minimum",
    Rejection.STAR: "a star: a point source of the reference catalogue nearby",
    Rejection.TOO_FEW_DETECTIONS: "fewer detections than the minimum",
    Rejection.TOO_OLD: "first detected too long ago",
    Rejection.LOW_SNR: "signal-to-noise below the minimum",
}
"""What each rejection code of the built-in filters means, in words."""


def _below(value: float | None, minimum: float | None) -> bool:
    """Return True when a minimum is set and the value is missing or below it."""
    return minimum is not None and (value is None or value < minimum)


class ZtfFilter(Filter):
    """Accepts ZTF alerts that look like real, positive, extragalactic-candidate detections."""

    version: ClassVar[str] = "1.0"
    codes: ClassVar[Mapping[int, str]] = CODES

    class Config(UnitConfig):
        """Options of the ZTF filter (null switches a cut off)."""

        min_rb: float | None = Field(
            0.3, ge=0, le=1, description="minimum real/bogus score `rb` (RandomForest)"
        )
        min_drb: float | None = Field(
            0.5, ge=0, le=1, description="minimum deep real/bogus score `drb` (schema 3.3+)"
        )
        require_drb: bool = Field(
            False,
            description="reject alerts without `drb` (older schemas); if false, skip the cut",
        )
        require_positive: bool = Field(
            True, description="reject negative subtractions (`isdiffpos` not `t`/`1`)"
        )
        max_sgscore: float | None = Field(
            0.8,
            ge=0,
            le=1,
            description="reject when the nearest PS1 source has `sgscore1` above this "
            "(a star) and lies within `star_radius_arcsec`",
        )
        star_radius_arcsec: float = Field(
            1.0, ge=0, description="radius (`distpsnr1`) within which a PS1 star vetoes"
        )
        min_ssdistnr_arcsec: float | None = Field(
            12.0,
            ge=0,
            description="reject when a known solar-system object (`ssmagnr` set) lies "
            "within this distance (`ssdistnr`)",
        )
        min_ndet: int = Field(2, ge=0, description="minimum number of detections (see `ndet_from`)")
        ndet_from: Literal["alert", "ndethist"] = Field(
            "alert",
            description="count detections in the packet (`candidate` + `prv_candidates` "
            "with a `candid`) or take the survey's `ndethist`",
        )
        max_duration_days: float | None = Field(
            None,
            ge=0,
            description="reject when `jd - jdstarthist` (days since the first detection "
            "at this position) exceeds this",
        )
        group: int | None = Field(
            None, ge=0, description="group to accept into (gates which T1/T2 units run)"
        )

    config: Config

    def decide(self, alert: Alert) -> Decision:
        """Return the first failed cut as a rejection, else an acceptance."""
        cfg = self.config
        if alert.survey != "ztf":
            return Decision.reject(Rejection.WRONG_SURVEY, f"not a ZTF alert ({alert.survey})")
        cand = alert.payload.get("candidate")
        if not isinstance(cand, Mapping):
            return Decision.reject(Rejection.NO_DETECTION, "no candidate record")
        if cfg.min_ssdistnr_arcsec is not None and _near_solar_system(cand, cfg):
            return Decision.reject(
                Rejection.SOLAR_SYSTEM, f'known solar-system object {cand["ssdistnr"]:.1f}" away'
            )
        if cfg.require_positive and str(cand.get("isdiffpos")).lower() not in ("t", "1"):
            return Decision.reject(
                Rejection.NEGATIVE, f"negative subtraction: {cand.get('isdiffpos')}"
            )
        rb = number(cand.get("rb"))
        if _below(rb, cfg.min_rb):
            return Decision.reject(Rejection.REAL_BOGUS, f"rb {rb} below {cfg.min_rb}")
        drb = number(cand.get("drb"))
        if (drb is not None or cfg.require_drb) and _below(drb, cfg.min_drb):
            return Decision.reject(Rejection.DEEP_REAL_BOGUS, f"drb {drb} below {cfg.min_drb}")
        if cfg.max_sgscore is not None and _is_star(cand, cfg):
            return Decision.reject(
                Rejection.STAR,
                f'PS1 star: sgscore1 {cand["sgscore1"]:.2f} at {cand["distpsnr1"]:.2f}"',
            )
        ndet = _ztf_ndet(alert.payload, cand, cfg.ndet_from)
        if ndet < cfg.min_ndet:
            return Decision.reject(
                Rejection.TOO_FEW_DETECTIONS,
                f"{ndet} detections ({cfg.ndet_from}), need {cfg.min_ndet}",
            )
        if cfg.max_duration_days is not None:
            jd, start = number(cand.get("jd")), number(cand.get("jdstarthist"))
            if jd is not None and start is not None and jd - start > cfg.max_duration_days:
                return Decision.reject(
                    Rejection.TOO_OLD,
                    f"first detected {jd - start:.1f} d ago, over {cfg.max_duration_days}",
                )
        return Decision.accept(cfg.group)


def _near_solar_system(cand: Mapping[str, Any], cfg: ZtfFilter.Config) -> bool:
    """Return True when a known solar-system object lies within the configured distance."""
    dist, mag = number(cand.get("ssdistnr")), number(cand.get("ssmagnr"))
    if dist is None or dist < 0 or mag is None or mag < 0:  # -999: none within 30"
        return False
    return cfg.min_ssdistnr_arcsec is not None and dist <= cfg.min_ssdistnr_arcsec


def _is_star(cand: Mapping[str, Any], cfg: ZtfFilter.Config) -> bool:
    """Return True when the nearest PS1 source is close and star-like."""
    score, dist = number(cand.get("sgscore1")), number(cand.get("distpsnr1"))
    if score is None or dist is None or dist < 0 or cfg.max_sgscore is None:
        return False
    return dist < cfg.star_radius_arcsec and score > cfg.max_sgscore


def _ztf_ndet(payload: Mapping[str, Any], cand: Mapping[str, Any], source: str) -> int:
    """Return the number of detections: in the packet, or the survey's ``ndethist``."""
    if source == "ndethist":
        return int(number(cand.get("ndethist")) or 0)
    history = records(payload.get("prv_candidates"))
    return 1 + sum(1 for e in history if e.get("candid") is not None and "forcediffimflux" not in e)


class LsstFilter(Filter):
    """Accepts Rubin (LSST) alerts of reliable, positive detections of non-moving objects."""

    version: ClassVar[str] = "1.0"
    codes: ClassVar[Mapping[int, str]] = CODES

    class Config(UnitConfig):
        """Options of the LSST filter (null switches a cut off)."""

        min_reliability: float | None = Field(
            0.5, ge=0, le=1, description="minimum `diaSource.reliability` (missing fails)"
        )
        require_positive: bool = Field(
            True, description="reject non-positive difference flux (`diaSource.psfFlux`)"
        )
        reject_solar_system: bool = Field(
            True,
            description="reject sources associated with a solar-system object "
            "(`ssObjectId` set, or no `diaObjectId`)",
        )
        min_ndet: int = Field(
            2, ge=0, description="minimum number of detections: `diaSource` + `prvDiaSources`"
        )
        min_snr: float | None = Field(
            None, ge=0, description="minimum `psfFlux / psfFluxErr` of the new detection"
        )
        max_duration_days: float | None = Field(
            None,
            ge=0,
            description="reject when the first detection in the packet is older than "
            "this many days",
        )
        group: int | None = Field(
            None, ge=0, description="group to accept into (gates which T1/T2 units run)"
        )

    config: Config

    def decide(self, alert: Alert) -> Decision:
        """Return the first failed cut as a rejection, else an acceptance."""
        cfg = self.config
        if alert.survey != "lsst":
            return Decision.reject(Rejection.WRONG_SURVEY, f"not an LSST alert ({alert.survey})")
        payload = alert.payload
        source = payload.get("diaSource")
        if not isinstance(source, Mapping):
            return Decision.reject(Rejection.NO_DETECTION, "no diaSource record")
        if cfg.reject_solar_system:
            why = _lsst_solar_system(payload, source)
            if why:
                return Decision.reject(Rejection.SOLAR_SYSTEM, why)
        flux, fluxerr = number(source.get("psfFlux")), number(source.get("psfFluxErr"))
        if cfg.require_positive and (flux is None or flux <= 0):
            return Decision.reject(Rejection.NEGATIVE, f"psfFlux {flux} is not positive")
        reliability = number(source.get("reliability"))
        if _below(reliability, cfg.min_reliability):
            msg = f"reliability {reliability} below {cfg.min_reliability}"
            return Decision.reject(Rejection.REAL_BOGUS, msg)
        history = records(payload.get("prvDiaSources"))
        ndet = 1 + len(history)
        if ndet < cfg.min_ndet:
            msg = f"{ndet} detections, need {cfg.min_ndet}"
            return Decision.reject(Rejection.TOO_FEW_DETECTIONS, msg)
        if cfg.max_duration_days is not None:
            times = [number(e.get("midpointMjdTai")) for e in (source, *history)]
            known = [t for t in times if t is not None]
            span = max(known) - min(known) if known else 0.0
            if span > cfg.max_duration_days:
                msg = f"first detected {span:.1f} d before, over {cfg.max_duration_days}"
                return Decision.reject(Rejection.TOO_OLD, msg)
        if cfg.min_snr is not None:
            snr = abs(flux) / fluxerr if flux is not None and fluxerr else None
            if _below(snr, cfg.min_snr):
                return Decision.reject(Rejection.LOW_SNR, f"SNR {snr} below {cfg.min_snr}")
        return Decision.accept(cfg.group)


def _lsst_solar_system(payload: Mapping[str, Any], source: Mapping[str, Any]) -> str:
    """Return why the alert is a solar-system source, or "" if it is not."""
    ss_source = payload.get("ssSource")
    ss_ids = [source.get("ssObjectId")]
    if isinstance(ss_source, Mapping):
        ss_ids.append(ss_source.get("ssObjectId"))
    for ss_id in ss_ids:
        if ss_id not in (None, 0):
            return f"associated with solar-system object {ss_id}"
    obj = payload.get("diaObject")
    obj_id = source.get("diaObjectId")
    if obj_id in (None, 0) and isinstance(obj, Mapping):
        obj_id = obj.get("diaObjectId")
    if obj_id in (None, 0):
        return "no diaObject: an unassociated or moving source"
    return ""
