"""Galactic latitude and angular distance (units.celestial) against astropy, which AMPEL's
DecentFilter asks (``SkyCoord(ra, dec).galactic.b``)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from skyledger.units.celestial import galactic_latitude, separation_arcsec

# ICRS positions (degrees) of astropy's Galactic centre (l = b = 0) and north Galactic
# pole (b = 90): Galactic(l=0, b=0).icrs and Galactic(l=0, b=90).icrs, astropy 8
CENTRE = (266.4049882865447, -28.936177761791473)
NORTH_POLE = (192.85947789477606, 27.128252414968028)


def test_the_galactic_centre_and_poles() -> None:
    assert galactic_latitude(*CENTRE) == pytest.approx(0.0, abs=1e-9)
    assert galactic_latitude(*NORTH_POLE) == pytest.approx(90.0, abs=1e-9)
    south = ((NORTH_POLE[0] + 180) % 360, -NORTH_POLE[1])
    assert galactic_latitude(*south) == pytest.approx(-90.0, abs=1e-9)


def test_the_latitude_is_astropy_s_everywhere() -> None:
    rng = np.random.default_rng(22)
    ra = rng.uniform(0, 360, 500)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 500)))
    expected = SkyCoord(ra * u.deg, dec * u.deg).galactic.b.deg
    ours = np.array([galactic_latitude(r, d) for r, d in zip(ra, dec, strict=True)])
    assert np.abs(ours - expected).max() < 1e-9


def test_separations_are_astropy_s() -> None:
    ras, decs = np.array([10.001, 10.0, 190.0, 10.0]), np.array([20.0, 20.002, -20.0, 20.0])
    expected = SkyCoord(10 * u.deg, 20 * u.deg).separation(SkyCoord(ras * u.deg, decs * u.deg))
    assert separation_arcsec(10, 20, ras, decs) == pytest.approx(expected.arcsec, abs=1e-6)
