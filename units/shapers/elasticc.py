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

from pydantic import BaseModel, ConfigDict

from ledger.errors import UnitError
from units.alerts import Alert, Datapoint
from units.shapers.dia import shape_dia

__all__ = ["ElasticcShaper"]


class ElasticcShaper:
    """Turns an ELAsTiCC alert into datapoints."""

    version: ClassVar[str] = "1.0"

    class Config(BaseModel):
        """The ELAsTiCC shaper has no options."""

        model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, config: ElasticcShaper.Config | None = None) -> None:
        self.config = config or ElasticcShaper.Config()

    def shape(self, alert: Alert) -> list[Datapoint]:
        """Return the alert's sources, forced sources and non-detections as datapoints."""
        if alert.survey != "elasticc":
            msg = f"ElasticcShaper cannot shape a {alert.survey} alert ({alert.locator})"
            raise UnitError(msg, unit="ElasticcShaper")
        return shape_dia(alert, "elasticc")
