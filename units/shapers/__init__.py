"""Shapers: one per survey, each turning an :class:`~units.alerts.Alert` into datapoints."""

from __future__ import annotations

from skyledger.units.shapers.elasticc import ElasticcShaper
from skyledger.units.shapers.lsst import LsstShaper
from skyledger.units.shapers.ztf import ZtfShaper

__all__ = ["SHAPERS", "ElasticcShaper", "LsstShaper", "Shaper", "ZtfShaper", "shaper_for"]

Shaper = ZtfShaper | LsstShaper | ElasticcShaper

SHAPERS: dict[str, type[Shaper]] = {
    "elasticc": ElasticcShaper,
    "lsst": LsstShaper,
    "ztf": ZtfShaper,
}
"""The default shaper class of each survey (``Alert.survey``)."""


def shaper_for(survey: str) -> Shaper:
    """Return a default-configured shaper for ``survey``; KeyError names the known ones."""
    try:
        return SHAPERS[survey]()
    except KeyError:
        msg = f"no shaper for survey {survey!r}; known: {sorted(SHAPERS)}"
        raise KeyError(msg) from None
