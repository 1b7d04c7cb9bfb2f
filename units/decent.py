"""DecentFilter: AMPEL's general-purpose ZTF filter (Ampel-ZTF ``ampel/ztf/t0/DecentFilter.py``)
written for skyledger: its cuts, in its order, with its option names.

The first cut that fails decides. Each has its own code, whose words start with the key
AMPEL logs that rejection under; codes that mean what they mean for ZtfFilter keep its
numbers (``units.filters.Rejection``):

| code | AMPEL key | rejects when |
|------|-----------|--------------|
| -1   | (survey)  | not a ZTF alert |
| -2   | (candidate) | no candidate record |
| -8   | nDet      | fewer than min_ndet detections (candidate + prv_candidates with a candid) |
| -12  | tSpan     | those detections' jd span is not within [min_tspan, max_tspan] |
| -11  | missing, isNone | the candidate lacks a key a cut reads (KEYS), or it is null |
| -4   | isdiffpos | isdiffpos is f or 0 |
| -5   | rb        | rb < min_rb |
| -6   | drb       | min_drb > 0 and drb < min_drb (skipped without drb) |
| -13  | fwhm      | fwhm > max_fwhm |
| -14  | elong     | elong > max_elong |
| -15  | magdiff   | abs(magdiff) > max_magdiff |
| -16  | nbad      | nbad > max_nbad, with apply_max_nbad only (AMPEL never applies it) |
| -17  | archive_tspan | jdendhist - jdstarthist not strictly within (min, max) |
| -3   | ssdistnr  | 0 <= ssdistnr < min_sso_dist |
| -18  | galPlane  | abs(b) < min_gal_lat |
| -7   | distpsnr1 | distpsnr1 < ps1_sgveto_rad and sgscore1 > ps1_sgveto_th |
| -19  | ps1Confusion | all distpsnr1-3 < ps1_confusion_rad, all abs(sgscore1-3 - 0.5) < tol |
| -20  | gaiaIsStar | a source of gaia_catalog within gaia_rs is a star (units.gaia) |
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any, ClassVar

from pydantic import Field, model_validator

from skyledger.ledger.errors import ConfigError
from skyledger.units.alerts import Alert
from skyledger.units.base import UnitConfig
from skyledger.units.celestial import galactic_latitude
from skyledger.units.contracts import Filter
from skyledger.units.filters import Rejection
from skyledger.units.gaia import GaiaTable, StarCuts
from skyledger.units.photometry import number
from skyledger.units.shapers.bodies import records
from skyledger.units.views import Decision

__all__ = ["CODES", "DecentFilter", "DecentRejection"]

HU_RAPID = "AmpelAstro/Ampel-HU-astro ampel/conf/ampel-hu-astro/alias.yml (t0 HU_RAPID)"
"""Where the defaults AMPEL's source does not give come from (the same values as
Ampel-ZTF tests/test-data/decentfilter_config.yaml)."""
SOURCE = "AmpelAstro/Ampel-ZTF ampel/ztf/t0/DecentFilter.py"


class DecentRejection(IntEnum):
    """Rejection codes of DecentFilter (see the module docstring)."""

    WRONG_SURVEY = Rejection.WRONG_SURVEY
    NO_DETECTION = Rejection.NO_DETECTION
    SOLAR_SYSTEM = Rejection.SOLAR_SYSTEM
    NEGATIVE = Rejection.NEGATIVE
    REAL_BOGUS = Rejection.REAL_BOGUS
    DEEP_REAL_BOGUS = Rejection.DEEP_REAL_BOGUS
    STAR = Rejection.STAR
    TOO_FEW_DETECTIONS = Rejection.TOO_FEW_DETECTIONS
    MISSING_KEY = -11
    TIME_SPAN = -12
    FWHM = -13
    ELONGATED = -14
    MAGDIFF = -15
    BAD_PIXELS = -16
    ARCHIVE_SPAN = -17
    GALACTIC_PLANE = -18
    PS1_CONFUSION = -19
    GAIA_STAR = -20


R = DecentRejection
CODES: dict[int, str] = {
    R.WRONG_SURVEY: "survey: an alert of another survey than ZTF",
    R.NO_DETECTION: "candidate: no candidate record in the alert",
    R.TOO_FEW_DETECTIONS: "nDet: fewer detections in the alert than min_ndet",
    R.TIME_SPAN: "tSpan: the alert's detections span less than min_tspan or more than "
    "max_tspan days",
    R.MISSING_KEY: "missing/isNone: the candidate lacks a key a cut reads, or it is null",
    R.NEGATIVE: "isdiffpos: a negative subtraction (isdiffpos f or 0)",
    R.REAL_BOGUS: "rb: real/bogus score below min_rb",
    R.DEEP_REAL_BOGUS: "drb: deep-learning real/bogus score below min_drb",
    R.FWHM: "fwhm: FWHM above max_fwhm",
    R.ELONGATED: "elong: elongation above max_elong",
    R.MAGDIFF: "magdiff: |magap - magpsf| above max_magdiff",
    R.BAD_PIXELS: "nbad: more bad pixels than max_nbad (with apply_max_nbad only)",
    R.ARCHIVE_SPAN: "archive_tspan: jdendhist - jdstarthist not strictly between "
    "min_archive_tspan and max_archive_tspan",
    R.SOLAR_SYSTEM: "ssdistnr: a known solar-system object closer than min_sso_dist",
    R.GALACTIC_PLANE: "galPlane: Galactic latitude |b| below min_gal_lat",
    R.STAR: "distpsnr1: a PS1 star (sgscore1 above ps1_sgveto_th) within ps1_sgveto_rad",
    R.PS1_CONFUSION: "ps1Confusion: three PS1 sources within ps1_confusion_rad, each with "
    "sgscore within ps1_confusion_sg_tol of 0.5",
    R.GAIA_STAR: "gaiaIsStar: a Gaia source with significant proper motion or parallax "
    "within gaia_rs",
}
"""What each rejection code of DecentFilter means, in words (AMPEL's log key first)."""

KEYS = (
    "fwhm", "elong", "magdiff", "nbad", "distpsnr1", "sgscore1", "distpsnr2", "sgscore2",
    "distpsnr3", "sgscore3", "isdiffpos", "ra", "dec", "rb", "ssdistnr",
)  # fmt: skip
"""The candidate keys every alert must hold, not null (AMPEL's ``keys_to_check``)."""


def _option(default: Any, meaning: str, source: str = HU_RAPID) -> Any:
    return Field(default, description=f"{meaning} [default: {source}]")


class DecentFilter(Filter):
    """AMPEL's DecentFilter for ZTF alerts: history, image quality, solar-system, Galactic
    plane, PS1 and (with a local Gaia table) Gaia cuts, in AMPEL's order."""

    version: ClassVar[str] = "1.0"
    codes: ClassVar[Mapping[int, str]] = CODES

    class Config(UnitConfig):
        """Options of DecentFilter: AMPEL's names and meanings."""

        min_ndet: int = _option(2, "minimum detections in the alert (candidate + "
                                "prv_candidates with a candid)")  # fmt: skip
        min_tspan: float = _option(-666.0, "minimum days between the alert's first and "
                                   "last detection")  # fmt: skip
        max_tspan: float = _option(5.0, "maximum days between the alert's first and last "
                                   "detection")  # fmt: skip
        min_archive_tspan: float = _option(
            0.0, "jdendhist - jdstarthist must be above this (days)", SOURCE
        )
        max_archive_tspan: float = _option(
            1e5, "jdendhist - jdstarthist must be below this (days)", SOURCE
        )
        min_drb: float = _option(0.0, "minimum deep real/bogus score drb (0: no cut)", SOURCE)
        min_rb: float = _option(0.3, "minimum real/bogus score rb")
        max_fwhm: float = _option(5.5, "maximum FWHM (pixels)")
        max_elong: float = _option(1.4, "maximum elongation aimage / bimage")
        max_magdiff: float = _option(1.0, "maximum |magap - magpsf| (mag)")
        max_nbad: int = _option(0, "maximum bad pixels in the 5x5 stamp (only with "
                                "apply_max_nbad: AMPEL never applies it)")  # fmt: skip
        apply_max_nbad: bool = Field(
            False, description="apply max_nbad (AMPEL declares it but never cuts on it)"
        )
        min_sso_dist: float = _option(20.0, "a known solar-system object closer than this "
                                      "(ssdistnr, arcsec) rejects")  # fmt: skip
        min_gal_lat: float = _option(14.0, "minimum |Galactic latitude| (degrees; negative: "
                                     "no cut)")  # fmt: skip
        ps1_sgveto_rad: float = _option(1.0, "a PS1 star within this (distpsnr1, arcsec) "
                                        "rejects")  # fmt: skip
        ps1_sgveto_th: float = _option(0.8, "a PS1 source with sgscore1 above this is a star")
        ps1_confusion_rad: float = _option(3.0, "reject when all three PS1 sources are "
                                           "within this (arcsec) ...")  # fmt: skip
        ps1_confusion_sg_tol: float = _option(0.1, "... and all three sgscores are within "
                                              "this of 0.5")  # fmt: skip
        gaia_rs: float = _option(0.0, "Gaia search radius (arcsec; 0 or less: no Gaia cut)",
                                 "skyledger, as no table is given by default; HU_RAPID has "
                                 "20, searching Gaia DR2 with catsHTM")  # fmt: skip
        gaia_pm_signif: float = _option(3.0, "proper motion significance that makes a star")
        gaia_plx_signif: float = _option(3.0, "parallax significance that makes a star")
        gaia_veto_gmag_min: float = _option(9.0, "brightest G of a vetoing Gaia source")
        gaia_veto_gmag_max: float = _option(20.0, "faintest G of a vetoing Gaia source")
        gaia_excessnoise_sig_max: float = _option(999.0, "Gaia sources with "
                                                  "astrometric_excess_noise_sig at or above "
                                                  "this are not trusted")  # fmt: skip
        gaia_catalog: str | None = Field(
            None,
            description="local Gaia table (TAP JSON, ECSV or CSV with Gaia archive column "
            "names) searched instead of AMPEL's catsHTM Gaia DR2; needed when gaia_rs > 0",
        )
        gaia_catalog_sha256: str | None = Field(
            None,
            pattern=r"^[0-9a-fA-F]{64}$",
            description="SHA-256 of gaia_catalog (required with it: the configuration "
            "hash pins the table's content)",
        )
        group: int | None = Field(
            None, ge=0, description="group to accept into (gates which T1/T2 units run)"
        )

        @model_validator(mode="after")
        def _gaia_table(self) -> DecentFilter.Config:
            path, digest = self.gaia_catalog, self.gaia_catalog_sha256
            if path is None:
                if self.gaia_rs > 0:
                    raise ValueError(
                        "gaia_catalog: required when gaia_rs > 0 (a local Gaia table; "
                        "AMPEL cone-searches catsHTM), or set gaia_rs to 0"
                    )
                if digest is not None:
                    raise ValueError("gaia_catalog_sha256: given without gaia_catalog")
                return self
            if digest is None:
                raise ValueError(f"gaia_catalog_sha256: required with gaia_catalog {path!r}")
            try:
                GaiaTable.load(path, digest)
            except ValueError as exc:
                raise ValueError(f"gaia_catalog: {exc}") from None
            return self

    config: Config

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        cfg = self.config
        self._gaia: GaiaTable | None = None
        self._cuts = StarCuts(
            cfg.gaia_rs, cfg.gaia_pm_signif, cfg.gaia_plx_signif, cfg.gaia_veto_gmag_min,
            cfg.gaia_veto_gmag_max, cfg.gaia_excessnoise_sig_max,
        )  # fmt: skip
        if cfg.gaia_catalog is not None and cfg.gaia_catalog_sha256 is not None:
            try:
                self._gaia = GaiaTable.load(cfg.gaia_catalog, cfg.gaia_catalog_sha256)
            except ValueError as exc:
                raise ConfigError(f"unit {self.name!r}: gaia_catalog: {exc}") from None

    def decide(self, alert: Alert) -> Decision:
        """Return the first failed cut as a rejection, else an acceptance."""
        if alert.survey != "ztf":
            return Decision.reject(R.WRONG_SURVEY, f"not a ZTF alert ({alert.survey})")
        cand = alert.payload.get("candidate")
        if not isinstance(cand, Mapping):
            return Decision.reject(R.NO_DETECTION, "no candidate record")
        return self._history(alert.payload, cand) or self._candidate(cand)

    def _history(self, payload: Mapping[str, Any], cand: Mapping[str, Any]) -> Decision | None:
        """Return the rejection on the alert's detections (count and span), if any."""
        cfg = self.config
        history = [p for p in records(payload.get("prv_candidates")) if p.get("candid") is not None]
        detections = [cand, *history] if cand.get("candid") is not None else history
        if len(detections) < cfg.min_ndet:
            return Decision.reject(
                R.TOO_FEW_DETECTIONS, f"nDet {len(detections)} < min_ndet {cfg.min_ndet}"
            )
        jds = [jd for jd in (number(d.get("jd")) for d in detections) if jd is not None]
        span = max(jds) - min(jds) if jds else 0.0
        if not cfg.min_tspan <= span <= cfg.max_tspan:
            return Decision.reject(
                R.TIME_SPAN,
                f"tSpan {span:.4f} d not in [min_tspan {cfg.min_tspan:g}, "
                f"max_tspan {cfg.max_tspan:g}]",
            )
        return None

    def _candidate(self, cand: Mapping[str, Any]) -> Decision:
        """Return the first failed cut on the new detection, else an acceptance."""
        cfg = self.config
        for key in KEYS:
            if key not in cand:
                return Decision.reject(R.MISSING_KEY, f"missing: {key}")
            if (number(cand[key]) if key != "isdiffpos" else cand[key]) is None:
                return Decision.reject(R.MISSING_KEY, f"isNone: {key} ({cand[key]!r})")
        v: dict[str, float] = {k: float(cand[k]) for k in KEYS if k != "isdiffpos"}
        if cand["isdiffpos"] in ("f", "0"):
            return Decision.reject(
                R.NEGATIVE, f"isdiffpos {cand['isdiffpos']!r}: negative subtraction"
            )
        if v["rb"] < cfg.min_rb:
            return Decision.reject(R.REAL_BOGUS, f"rb {v['rb']:.3f} < min_rb {cfg.min_rb:g}")
        drb = number(cand.get("drb"))
        if cfg.min_drb > 0 and drb is not None and drb < cfg.min_drb:
            return Decision.reject(R.DEEP_REAL_BOGUS, f"drb {drb:.3f} < min_drb {cfg.min_drb:g}")
        return self._image(v) or self._astro(cand, v)

    def _image(self, v: Mapping[str, float]) -> Decision | None:
        """Return the rejection on image quality, if any."""
        cfg = self.config
        if v["fwhm"] > cfg.max_fwhm:
            return Decision.reject(R.FWHM, f"fwhm {v['fwhm']:.2f} > max_fwhm {cfg.max_fwhm:g}")
        if v["elong"] > cfg.max_elong:
            return Decision.reject(
                R.ELONGATED, f"elong {v['elong']:.3f} > max_elong {cfg.max_elong:g}"
            )
        if abs(v["magdiff"]) > cfg.max_magdiff:
            return Decision.reject(
                R.MAGDIFF,
                f"magdiff {v['magdiff']:.3f}: |magdiff| > max_magdiff {cfg.max_magdiff:g}",
            )
        if cfg.apply_max_nbad and v["nbad"] > cfg.max_nbad:
            return Decision.reject(R.BAD_PIXELS, f"nbad {v['nbad']:g} > max_nbad {cfg.max_nbad}")
        return None

    def _astro(self, cand: Mapping[str, Any], v: Mapping[str, float]) -> Decision:
        """Return the first failed cut on the archive, the sky and the catalogues, else an
        acceptance."""
        cfg = self.config
        start, end = number(cand.get("jdstarthist")), number(cand.get("jdendhist"))
        if start is not None and end is not None:
            span = end - start
            if not cfg.min_archive_tspan < span < cfg.max_archive_tspan:
                return Decision.reject(
                    R.ARCHIVE_SPAN,
                    f"archive_tspan {span:.4f} d not in (min_archive_tspan "
                    f"{cfg.min_archive_tspan:g}, max_archive_tspan {cfg.max_archive_tspan:g})",
                )
        if 0 <= v["ssdistnr"] < cfg.min_sso_dist:
            return Decision.reject(
                R.SOLAR_SYSTEM,
                f'ssdistnr {v["ssdistnr"]:.2f}" < min_sso_dist {cfg.min_sso_dist:g}',
            )
        b = galactic_latitude(v["ra"], v["dec"])
        if abs(b) < cfg.min_gal_lat:
            return Decision.reject(
                R.GALACTIC_PLANE, f"galPlane |b| {abs(b):.3f} < min_gal_lat {cfg.min_gal_lat:g}"
            )
        return self._ps1(v) or self._gaia_star(v) or Decision.accept(cfg.group)

    def _ps1(self, v: Mapping[str, float]) -> Decision | None:
        """Return the rejection on the PS1 neighbours, if any."""
        cfg = self.config
        if v["distpsnr1"] < cfg.ps1_sgveto_rad and v["sgscore1"] > cfg.ps1_sgveto_th:
            return Decision.reject(
                R.STAR,
                f'distpsnr1 {v["distpsnr1"]:.2f}" < ps1_sgveto_rad {cfg.ps1_sgveto_rad:g} '
                f"and sgscore1 {v['sgscore1']:.3f} > ps1_sgveto_th {cfg.ps1_sgveto_th:g}",
            )
        far = max(v["distpsnr1"], v["distpsnr2"], v["distpsnr3"])
        off = max(abs(v["sgscore1"] - 0.5), abs(v["sgscore2"] - 0.5), abs(v["sgscore3"] - 0.5))
        if far < cfg.ps1_confusion_rad and off < cfg.ps1_confusion_sg_tol:
            return Decision.reject(
                R.PS1_CONFUSION,
                f'ps1Confusion: distpsnr1-3 up to {far:.2f}" < ps1_confusion_rad '
                f"{cfg.ps1_confusion_rad:g} and |sgscore1-3 - 0.5| up to {off:.3f} < "
                f"ps1_confusion_sg_tol {cfg.ps1_confusion_sg_tol:g}",
            )
        return None

    def _gaia_star(self, v: Mapping[str, float]) -> Decision | None:
        """Return the rejection on the Gaia table, if a source in it makes this a star."""
        cfg = self.config
        if cfg.gaia_rs <= 0 or self._gaia is None:
            return None
        star = self._gaia.star(v["ra"], v["dec"], self._cuts)
        if star is None:
            return None
        return Decision.reject(
            R.GAIA_STAR,
            f'gaiaIsStar: Gaia source_id {star.source_id} at {star.distance_arcsec:.2f}" '
            f"(G {star.gmag:.2f}): pmra {star.pmra_sig:.1f}, pmdec {star.pmdec_sig:.1f} "
            f"sigma (gaia_pm_signif {cfg.gaia_pm_signif:g}), parallax {star.parallax_sig:.1f} "
            f"sigma (gaia_plx_signif {cfg.gaia_plx_signif:g})",
        )
