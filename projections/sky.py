"""Positions on the sky: HEALPix cells of stocks and the cells a cone covers (cdshealpix).

Each stock's mean position is indexed by its HEALPix cell at depth :data:`DEPTH` (nested
scheme), an integer: the cells of any coarser depth are ranges of it. A cone search
asks cdshealpix for the cells (at a depth fitting the radius) that cover the cone, turns
them into ranges of depth-29 indices, reads the stocks in those ranges through the
index, and keeps those whose exact distance is within the radius.

cdshealpix imports astropy (about a second), so it is imported on first use only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from skyledger.units.celestial import separation_deg

__all__ = [
    "DEPTH",
    "Cone",
    "cells_of",
    "mean_direction",
]

DEPTH = 29
"""The depth of the stocks' cells (about 0.4 milliarcseconds across)."""
_CELL_DEG_AT_0 = 58.6  # the side of a depth-0 cell, about sqrt(4 pi / 12) radians
_MAX_RANGES = 64


def mean_direction(x: float, y: float, z: float) -> tuple[float, float] | None:
    """Return (ra, dec) in degrees of a sum of unit vectors, None if it has no direction."""
    norm = math.sqrt(x * x + y * y + z * z)
    if norm == 0.0:
        return None
    ra = math.degrees(math.atan2(y, x)) % 360.0
    dec = math.degrees(math.asin(max(-1.0, min(1.0, z / norm))))
    return ra, dec


def cells_of(ra_deg: Sequence[float], dec_deg: Sequence[float]) -> list[int]:
    """Return the depth-29 nested HEALPix cells of directions given in degrees."""
    if not ra_deg:
        return []
    from astropy import units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix import nested

    cells: Any = nested.lonlat_to_healpix(
        Longitude(list(ra_deg), unit=u.deg), Latitude(list(dec_deg), unit=u.deg), DEPTH
    )
    return [int(c) for c in cells]


class Cone:
    """A cone on the sky: centre (degrees) and radius (arcseconds)."""

    def __init__(self, ra: float, dec: float, radius_arcsec: float) -> None:
        if not (0.0 <= ra < 360.0):
            raise ValueError(f"ra {ra} is not in [0, 360) degrees")
        if not (-90.0 <= dec <= 90.0):
            raise ValueError(f"dec {dec} is not in [-90, 90] degrees")
        if not (0.0 < radius_arcsec <= 36000.0):
            raise ValueError(f"radius {radius_arcsec} is not in (0, 36000] arcseconds (10 deg)")
        self.ra, self.dec, self.radius_arcsec = ra, dec, radius_arcsec

    @property
    def radius_deg(self) -> float:
        """Return the radius in degrees."""
        return self.radius_arcsec / 3600.0

    def depth(self) -> int:
        """Return the depth whose cells are about as large as the radius."""
        ratio = _CELL_DEG_AT_0 / self.radius_deg
        return max(0, min(DEPTH, math.floor(math.log2(ratio))))

    def ranges(self) -> list[tuple[int, int]]:
        """Return the half-open ranges of depth-29 cells that cover the cone, merged."""
        from astropy import units as u
        from astropy.coordinates import Latitude, Longitude
        from cdshealpix import nested

        depth = self.depth()
        while True:
            found: Any = nested.cone_search(
                Longitude(self.ra, unit=u.deg), Latitude(self.dec, unit=u.deg),
                self.radius_deg * u.deg, depth, flat=False,
            )  # fmt: skip
            merged = _merge(
                (int(c) << 2 * (DEPTH - int(d)), (int(c) + 1) << 2 * (DEPTH - int(d)))
                for c, d in zip(found[0], found[1], strict=True)
            )
            if len(merged) <= _MAX_RANGES or depth == 0:
                return merged
            depth -= 1  # fewer, larger cells: fewer ranges to look up

    def contains(self, ra: float, dec: float) -> bool:
        """Return True if a direction lies within the cone."""
        return separation_deg(self.ra, self.dec, ra, dec) <= self.radius_deg

    def describe(self) -> dict[str, float]:
        """Return the cone as JSON-compatible data."""
        return {"ra": self.ra, "dec": self.dec, "radius_arcsec": self.radius_arcsec}


def _merge(ranges: Any) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(stop, merged[-1][1]))
        else:
            merged.append((start, stop))
    return merged
