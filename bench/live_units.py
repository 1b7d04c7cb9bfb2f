"""A CPU-bound T2 unit for ``bench/live.py``'s scale-out phase, registered by name (not
an installed entry point): the bench's worker processes are started through
``bench/live_worker.py``, which imports this module before the CLI.

:class:`T2CostlyFeatures` is the demo's T2LightCurveFeatures with a costlier Bazin fit:
``mcmc_niter`` MCMC iterations (light_curve's default is 128) before the least-squares
step, so that a state's work is mostly the unit's own computation, not the ledger's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import light_curve as lc
from pydantic import BaseModel, Field

from skyledger.units import register_unit
from skyledger.units.t2.features import T2LightCurveFeatures

__all__ = ["T2CostlyFeatures"]


@register_unit
class T2CostlyFeatures(T2LightCurveFeatures):
    """T2LightCurveFeatures whose Bazin fit runs ``mcmc_niter`` MCMC iterations."""

    version: ClassVar[str] = "1.0"

    class Config(T2LightCurveFeatures.Config):
        """The features' options, and the MCMC iterations of the Bazin fit."""

        mcmc_niter: int = Field(128, ge=1, description="MCMC iterations of the Bazin fit")

    config: Config

    def __init__(self, config: BaseModel | Mapping[str, Any] | None = None) -> None:
        """Validate the configuration and build the costlier Bazin fitter once."""
        super().__init__(config)
        self._bazin = lc.BazinFit(self.config.bazin_algorithm, mcmc_niter=self.config.mcmc_niter)
