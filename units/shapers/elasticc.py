"""The ELAsTiCC shaper: a simulated LSST-like alert (schema elasticc.v0_9) to datapoints.

``diaSource`` and ``prvDiaSources`` are detections with id
``datapoint_id({}, survey_id=f"elasticc:{diaSourceId}")``; ``prvDiaForcedSources`` are
forced photometry (``elasticc-forced:{diaForcedSourceId}``); ``prvDiaNondetectionLimits``
are upper limits with a content id. Fluxes (``psFlux``) are taken as nJy like Rubin's. See
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

__all__ = ["ElasticcShaper"]


class ElasticcShaper(Shaper):
    """Turns an ELAsTiCC alert into datapoints."""

    version: ClassVar[str] = "1.0"
    survey: ClassVar[str] = "elasticc"

    class Config(UnitConfig):
        """The ELAsTiCC shaper has no options."""

    def shape(self, alert: Alert) -> list[Datapoint]:
        """Return the alert's sources, forced sources and non-detections as datapoints."""
        if alert.survey != "elasticc":
            msg = f"ElasticcShaper cannot shape a {alert.survey} alert ({alert.locator})"
            raise UnitError(msg, unit="ElasticcShaper")
        return shape_dia(alert, "elasticc")
