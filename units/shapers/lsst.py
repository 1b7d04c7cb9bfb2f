"""The Rubin/LSST shaper: an LSST alert becomes detections and forced photometry.

``diaSource`` and ``prvDiaSources`` are detections with id
``datapoint_id({}, survey_id=f"lsst:{diaSourceId}")``; ``prvDiaForcedSources`` are
forced photometry with ``survey_id=f"lsst-forced:{diaForcedSourceId}"``. Schemas v9.0 to
v11.0 carry no upper limits; ``prvDiaNondetectionLimits`` would be read if present. See
:mod:`units.shapers.dia` for the normalised keys and superseded photometry (same id, new
body: the ledger keeps both, the combiner takes the latest received).
"""

from __future__ import annotations

from typing import ClassVar

from skyledger.ledger.errors import UnitError
from skyledger.units.alerts import Alert, Datapoint
from skyledger.units.base import UnitConfig
from skyledger.units.contracts import Shaper
from skyledger.units.shapers.dia import shape_dia

__all__ = ["LsstShaper"]


class LsstShaper(Shaper):
    """Turns a Rubin alert (schema v9.0 to v11.0, Fink re-serialized or not) into datapoints."""

    version: ClassVar[str] = "1.0"
    survey: ClassVar[str] = "lsst"

    class Config(UnitConfig):
        """The LSST shaper has no options."""

    def shape(self, alert: Alert) -> list[Datapoint]:
        """Return the alert's diaSource, previous sources and forced sources as datapoints."""
        if alert.survey != "lsst":
            msg = f"LsstShaper cannot shape a {alert.survey} alert ({alert.locator})"
            raise UnitError(msg, unit="LsstShaper")
        return shape_dia(alert, "lsst")
