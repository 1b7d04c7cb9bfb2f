"""Positions on the sky: unit vectors, Galactic latitude and angular distances (ICRS,
degrees).

The Galactic frame is astropy's (and so AMPEL's, which asks astropy): its north pole is
given in FK5 J2000, reached from ICRS through the frame bias of USNO Circular 179. Only
the pole matters for the latitude, so that is all this module keeps: the pole as a unit
vector in ICRS, computed once. ``tests/units/test_celestial.py`` compares the results
with astropy's to 1e-9 degrees.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported by separation_arcsec only: the read model needs none
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "galactic_latitude",
    "separation_arcsec",
    "separation_deg",
    "unit_vector",
]

Vector = tuple[float, float, float]

_NGP_FK5_DEG = (192.8594812065348, 27.12825118085622)
"""Right ascension and declination of the north Galactic pole in FK5 J2000 (astropy's
``Galactic._ngp_J2000``: the IAU's B1950 pole carried to FK5)."""
_FRAME_BIAS_MAS = (-19.9, 9.1, -22.9)
"""eta0, xi0 and dalpha0 of the ICRS to FK5 J2000 frame bias, milliarcseconds."""


def unit_vector(ra_deg: float, dec_deg: float) -> Vector:
    """Return the unit vector of a direction given in degrees."""
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    return (math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec))


def separation_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Return the angle between two directions in degrees (haversine: exact at small angles);
    :func:`separation_arcsec` is the same from one direction to many, with numpy."""
    p1, p2 = math.radians(dec1), math.radians(dec2)
    dp, dl = p2 - p1, math.radians(ra2 - ra1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def _turn(vector: Vector, axis: int, angle_deg: float) -> Vector:
    """Return the vector's coordinates in a frame turned by ``angle_deg`` about ``axis``
    (0, 1, 2: x, y, z), the turn taken positive counter-clockwise seen from the axis tip."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    i, j = ((1, 2), (2, 0), (0, 1))[axis]
    out = list(vector)
    out[i] = c * vector[i] + s * vector[j]
    out[j] = -s * vector[i] + c * vector[j]
    return (out[0], out[1], out[2])


def _pole_in_icrs() -> Vector:
    """Return the north Galactic pole as an ICRS unit vector.

    FK5 coordinates are ``B @ icrs`` with ``B = Rx(-eta0) Ry(xi0) Rz(dalpha0)``; the
    pole's ICRS vector is ``B.T @ pole_fk5``: the inverse turns, in reverse order.
    """
    eta0, xi0, da0 = (mas / 3.6e6 for mas in _FRAME_BIAS_MAS)
    pole = unit_vector(*_NGP_FK5_DEG)
    pole = _turn(pole, 0, eta0)
    pole = _turn(pole, 1, -xi0)
    return _turn(pole, 2, -da0)


_POLE = _pole_in_icrs()


def galactic_latitude(ra_deg: float, dec_deg: float) -> float:
    """Return the Galactic latitude b, in degrees, of an ICRS position in degrees."""
    x = unit_vector(ra_deg, dec_deg)
    p = _POLE
    along = p[0] * x[0] + p[1] * x[1] + p[2] * x[2]
    cross = (p[1] * x[2] - p[2] * x[1], p[2] * x[0] - p[0] * x[2], p[0] * x[1] - p[1] * x[0])
    return math.degrees(math.atan2(along, math.hypot(*cross)))


def separation_arcsec(
    ra_deg: float, dec_deg: float, ras_deg: npt.ArrayLike, decs_deg: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Return the angular distances, in arcseconds, from one position to many (haversine:
    accurate at the small distances of a cone search)."""
    import numpy as np

    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    ras, decs = np.radians(np.asarray(ras_deg, float)), np.radians(np.asarray(decs_deg, float))
    h = np.sin((decs - dec) / 2) ** 2 + math.cos(dec) * np.cos(decs) * np.sin((ras - ra) / 2) ** 2
    distance: npt.NDArray[np.float64] = np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))
    return distance * 3600.0
