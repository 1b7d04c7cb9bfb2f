"""T1 combiners: how a stock's datapoints become the states T2 units work on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field

from ledger.errors import UnitError
from units.alerts import Datapoint, DatapointKind
from units.base import UnitConfig
from units.contracts import Combiner
from units.photometry import number
from units.views import State, latest_bodies

__all__ = ["LightCurveCombiner", "latest_bodies"]  # latest_bodies lives in units.views


class LightCurveCombiner(Combiner):
    """Makes one state per stock: its whole light curve known so far.

    The state holds every datapoint of the configured kinds, once per id. With
    ``max_age_days`` only datapoints taken at most that many days before the latest
    detection are kept (later ones always are). A stock without any detection gets no
    state.
    """

    version: ClassVar[str] = "1.0"

    class Config(UnitConfig):
        """Options of the light-curve combiner."""

        kinds: tuple[DatapointKind, ...] = Field(
            ("detection", "upper_limit", "forced"),
            min_length=1,
            description="kinds of datapoints to include (detection, upper_limit, forced)",
        )
        max_age_days: float | None = Field(
            None,
            gt=0,
            description="keep only datapoints within this many days before the latest "
            "detection (null: keep all); datapoints without a time are then dropped",
        )

    config: Config

    def combine(self, stock: str, datapoints: Sequence[Datapoint]) -> list[State]:
        """Return ``[State(stock, ids)]``, or ``[]`` when the stock has no detection."""
        foreign = sorted({dp.stock for dp in datapoints if dp.stock != stock})
        if foreign:
            msg = f"datapoints of other stocks {foreign[:3]} given for {stock!r}"
            raise UnitError(msg, unit=self.name)
        points = latest_bodies(datapoints)
        detection_times = [number(dp.body.get("jd")) for dp in points if dp.kind == "detection"]
        if not detection_times:
            return []
        kinds = set(self.config.kinds)
        chosen = [dp for dp in points if dp.kind in kinds]
        max_age = self.config.max_age_days
        if max_age is not None:
            known = [t for t in detection_times if t is not None]
            if not known:
                return []
            oldest = max(known) - max_age
            chosen = [dp for dp in chosen if _taken_after(dp, oldest)]
        if not chosen:
            return []
        return [State(stock, tuple(dp.id for dp in chosen))]


def _taken_after(dp: Datapoint, oldest: float) -> bool:
    """Return True when the datapoint has a time no earlier than ``oldest``."""
    jd = number(dp.body.get("jd"))
    return jd is not None and jd >= oldest
