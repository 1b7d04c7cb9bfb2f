"""A local Gaia table, pinned by its SHA-256, and AMPEL's "is it a star?" test on it.

AMPEL's DecentFilter cone-searches Gaia DR2 (catsHTM, through a catalogue service) for
sources with a significant proper motion or parallax. A unit here reads no service: the
table is a file read once, when the unit is built, and its digest is part of the unit's
configuration, so the configuration hash pins what it matched against.

Readable files (told apart by their content, not their name):

* the Gaia archive's TAP JSON (``{"metadata": [{"name": ...}], "data": [[...]]}``);
* ECSV (``# %ECSV`` header, any delimiter it declares);
* CSV with a header row (lines starting with ``#`` are skipped).

Columns carry the Gaia archive's names; AMPEL's catsHTM DR2 names map to them as
``Mag_G``: ``phot_g_mean_mag``, ``PMRA``/``ErrPMRA``: ``pmra``/``pmra_error``,
``PMDec``/``ErrPMDec``: ``pmdec``/``pmdec_error``, ``Plx``/``ErrPlx``:
``parallax``/``parallax_error``, ``ExcessNoiseSig``: ``astrometric_excess_noise_sig``;
plus ``source_id``, ``ra`` and ``dec`` (degrees). An empty value is null (NaN).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import yaml

from skyledger.units.celestial import separation_arcsec

__all__ = ["COLUMNS", "GaiaStar", "GaiaTable", "StarCuts", "read_pinned"]

Floats = npt.NDArray[np.float64]

COLUMNS = (
    "source_id", "ra", "dec", "phot_g_mean_mag", "pmra", "pmra_error", "pmdec",
    "pmdec_error", "parallax", "parallax_error", "astrometric_excess_noise_sig",
)  # fmt: skip
"""The columns a table must have (Gaia archive names)."""


def read_pinned(path: str, sha256: str) -> bytes:
    """Return the file's bytes; raise ValueError (naming the path, and the digest it
    has when it is not ``sha256``) when it cannot be read or is another file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256.lower():
        raise ValueError(f"{path!r} has sha256 {actual}, not {sha256}")
    return data


@dataclass(frozen=True)
class StarCuts:
    """AMPEL's thresholds for a Gaia source that makes the alert a star."""

    radius_arcsec: float
    pm_signif: float
    plx_signif: float
    gmag_min: float
    gmag_max: float
    excess_noise_sig_max: float


@dataclass(frozen=True)
class GaiaStar:
    """The nearest Gaia source that made the alert a star, and why."""

    source_id: int
    distance_arcsec: float
    gmag: float
    pmra_sig: float
    pmdec_sig: float
    parallax_sig: float


@dataclass(frozen=True, eq=False)
class GaiaTable:
    """A Gaia table's needed columns, as arrays sorted by declination."""

    source_id: npt.NDArray[np.int64]
    columns: dict[str, Floats]

    @staticmethod
    @lru_cache(maxsize=4)
    def load(path: str, sha256: str) -> GaiaTable:
        """Return the table in the file whose content has this digest (read once per
        path and digest); raise ValueError saying what is wrong with it."""
        data = read_pinned(path, sha256)
        try:
            names, rows = _parse(data)
        except (ValueError, TypeError, KeyError, yaml.YAMLError, csv.Error) as exc:
            raise ValueError(f"{path!r} is not a Gaia table (TAP JSON, ECSV, CSV): {exc}") from None
        return GaiaTable.of(path, names, rows)

    @staticmethod
    def of(path: str, names: list[str], rows: list[list[Any]]) -> GaiaTable:
        """Return the table of these rows; raise ValueError naming the missing columns
        or the first bad value."""
        index = {name.lower(): i for i, name in enumerate(names)}
        missing = [c for c in COLUMNS if c not in index]
        if missing:
            raise ValueError(f"{path!r} lacks the Gaia column(s) {', '.join(missing)}")
        try:
            ids = np.array([int(row[index["source_id"]]) for row in rows], dtype=np.int64)
            values = {c: np.array([_float(row[index[c]]) for row in rows]) for c in COLUMNS[1:]}
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            raise ValueError(f"{path!r}: a bad value in a Gaia column: {exc}") from None
        order = np.argsort(values["dec"], kind="stable")
        return GaiaTable(ids[order], {c: v[order] for c, v in values.items()})

    def __len__(self) -> int:
        return len(self.source_id)

    def star(self, ra: float, dec: float, cuts: StarCuts) -> GaiaStar | None:
        """Return the nearest source within ``cuts.radius_arcsec`` that AMPEL's test calls
        a star, or None.

        A source counts when it is near for its brightness (closer than
        ``1.8 + 0.6 exp((20 - G) / 2.05)`` arcsec, with G within [gmag_min, gmag_max]),
        its astrometry is clean (``astrometric_excess_noise_sig`` below the maximum) and
        its proper motion in RA or Dec or its parallax is significant
        (``|value / error|`` above the threshold). Null values fail each test.
        """
        band = cuts.radius_arcsec / 3600.0
        decs = self.columns["dec"]
        lo, hi = np.searchsorted(decs, [dec - band, dec + band], side="left")
        if lo >= hi:
            return None
        col = {name: values[lo:hi] for name, values in self.columns.items()}
        dist = separation_arcsec(ra, dec, col["ra"], decs[lo:hi])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            gmag = col["phot_g_mean_mag"]
            near = (dist <= cuts.radius_arcsec) & (1.8 + 0.6 * np.exp((20 - gmag) / 2.05) > dist)
            near &= (cuts.gmag_min <= gmag) & (gmag <= cuts.gmag_max)
            near &= col["astrometric_excess_noise_sig"] < cuts.excess_noise_sig_max
            pmra = np.abs(col["pmra"] / col["pmra_error"])
            pmdec = np.abs(col["pmdec"] / col["pmdec_error"])
            plx = np.abs(col["parallax"] / col["parallax_error"])
        moving = (pmra > cuts.pm_signif) | (pmdec > cuts.pm_signif) | (plx > cuts.plx_signif)
        hits = np.flatnonzero(near & moving)
        if not len(hits):
            return None
        i = hits[np.argmin(dist[hits])]
        return GaiaStar(
            int(self.source_id[lo + i]), float(dist[i]), float(gmag[i]),
            float(pmra[i]), float(pmdec[i]), float(plx[i]),
        )  # fmt: skip


def _float(value: Any) -> float:
    """Return a table value as a float: null and empty as NaN."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    if isinstance(value, bool):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _parse(data: bytes) -> tuple[list[str], list[list[Any]]]:
    """Return the column names and rows of a TAP JSON, ECSV or CSV table."""
    if data.lstrip().startswith(b"{"):
        doc = orjson.loads(data)
        return [str(m["name"]) for m in doc["metadata"]], [list(row) for row in doc["data"]]
    text = data.decode("utf-8-sig")
    lines = text.splitlines()
    header = [line[1:] for line in lines if line.startswith("#")]
    delimiter = ","
    if header and header[0].strip().startswith("%ECSV"):
        meta = yaml.safe_load("\n".join(h[1:] if h.startswith(" ") else h for h in header[1:]))
        delimiter = (meta or {}).get("delimiter", " ")
    body = io.StringIO("\n".join(line for line in lines if not line.startswith("#")))
    reader = csv.reader(body, delimiter=delimiter, skipinitialspace=delimiter == " ")
    rows = [row for row in reader if row]
    if not rows:
        raise ValueError("no header row")
    return rows[0], rows[1:]
