"""Small units for pipeline tests: simple, real and registered like any other unit."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from pydantic import Field

from skyledger.units import (
    Alert,
    Combiner,
    Datapoint,
    Decision,
    Filter,
    Reaction,
    Reactor,
    State,
    StockSummary,
    T2Unit,
    T2View,
    UnitConfig,
    register_unit,
)
from skyledger.units.shapers.ztf import ZtfShaper


@register_unit
class MinDetections(Filter):
    """Accepts alerts whose candidate has at least ``n`` detections in its history."""

    version = "1"

    class Config(UnitConfig):
        n: int = Field(2, description="minimum number of detections")

    config: Config

    def decide(self, alert: Alert) -> Decision:
        prv = alert.payload.get("prv_candidates") or []
        count = 1 + sum(1 for p in prv if p.get("candid") is not None)
        return Decision.accept(1) if count >= self.config.n else Decision.reject(-10, "few")


@register_unit
class AllPoints(Combiner):
    """One state of all datapoints."""

    version = "1"

    def combine(
        self, stock: str, datapoints: Sequence[Datapoint], at: float | None = None
    ) -> list[State]:
        return [State(stock, tuple(d.id for d in datapoints))] if datapoints else []


@register_unit
class CountPoints(T2Unit):
    """Counts detections per band."""

    version = "1"
    binds: ClassVar = "lightcurve"

    def process(self, view: T2View) -> Mapping[str, Any]:
        assert view.lightcurve is not None
        return {b: len(view.lightcurve.band(b)[0]) for b in view.lightcurve.bands()}


@register_unit
class TotalFromCounts(T2Unit):
    """A tied unit: sums CountPoints' result."""

    version = "1"
    binds: ClassVar = "state"
    depends_on = ("CountPoints",)
    ranks = ("total",)

    def process(self, view: T2View) -> Mapping[str, Any]:
        return {"total": sum(view.dependencies["CountPoints"].values())}


@register_unit
class AlwaysFails(T2Unit):
    """Raises, to test failure records and retries."""

    version = "1"
    binds: ClassVar = "state"

    def process(self, view: T2View) -> Mapping[str, Any]:
        raise ValueError(f"cannot handle {view.stock}")


@register_unit
class FailsOn(T2Unit):
    """Raises on one stock's states, and counts datapoints on every other stock's."""

    version = "1"
    binds: ClassVar = "state"

    class Config(UnitConfig):
        stock: str

    config: Config

    def process(self, view: T2View) -> Mapping[str, Any]:
        if view.stock == self.config.stock:
            raise ValueError(f"cannot handle {view.stock}")
        return {"n": len(view.datapoints)}


@register_unit
class Busy(T2Unit):
    """Counts datapoints after burning CPU for a while (a costly unit, for scale-out)."""

    version = "1"
    binds: ClassVar = "state"

    class Config(UnitConfig):
        rounds: int = 20000

    config: Config

    def process(self, view: T2View) -> Mapping[str, Any]:
        total = 0
        for i in range(self.config.rounds):
            total = (total * 31 + i) % 1_000_003
        return {"n": len(view.datapoints), "check": total}


@register_unit
class CollectReactor(Reactor):
    """Writes the selected stocks to a file, one reaction for all."""

    version = "1"

    class Config(UnitConfig):
        path: str

    config: Config

    def react(self, stocks: Iterable[StockSummary]) -> list[Reaction]:
        names = sorted(s.stock for s in stocks)
        about = names[0] if len(names) == 1 else None  # a reaction about one stock says so
        return [Reaction(target=self.config.path, key="collect:" + ",".join(names),
                         payload={"stocks": names}, stock=about)]  # fmt: skip

    def deliver(self, reaction: Reaction) -> str:
        with open(reaction.target, "a") as fh:
            fh.write(" ".join(reaction.payload["stocks"]) + "\n")
        return f"wrote {len(reaction.payload['stocks'])} stocks"


@register_unit
class BandPoints(T2Unit):
    """Counts the detections of one band (a unit whose configuration changes its values)."""

    version = "1"
    binds: ClassVar = "lightcurve"

    class Config(UnitConfig):
        band: str = Field("r", description="the band to count")

    config: Config

    def process(self, view: T2View) -> Mapping[str, Any]:
        assert view.lightcurve is not None
        return {"n": len(view.lightcurve.band(self.config.band)[0]), "band": self.config.band}


@register_unit
class PlusOne(T2Unit):
    """A tied unit: BandPoints' count plus one."""

    version = "1"
    binds: ClassVar = "state"
    depends_on = ("BandPoints",)

    def process(self, view: T2View) -> Mapping[str, Any]:
        return {"n": view.dependencies["BandPoints"]["n"] + 1}


@register_unit
class CollectSelection(CollectReactor):
    """CollectReactor for a selection: once per pass, all the stocks seen in it."""

    scope: ClassVar = "selection"


def retrying_job(stock: str, max_attempts: int, backoff_s: float) -> str:
    """Return a job whose FailsOn unit fails on ``stock`` (CountPoints and
    TotalFromCounts succeed everywhere), with this retry policy."""
    return f"""\
name: retrying
channels: [{{name: ALL}}]
combiner: {{unit: AllPoints}}
t2:
  - unit: CountPoints
  - unit: FailsOn
    config: {{stock: {stock}}}
  - unit: TotalFromCounts
retry: {{max_attempts: {max_attempts}, backoff_s: {backoff_s}, factor: 2}}
"""


@register_unit
class ZtfDetectionsOnly(ZtfShaper):
    """A ZTF shaper that keeps detections only (a shaper to replay: another variant)."""

    version = "1"

    def shape(self, alert: Alert) -> list[Datapoint]:
        return [p for p in super().shape(alert) if p.kind == "detection"]


@register_unit
class CountAll(T2Unit):
    """Counts the datapoints of a state, of every kind."""

    version = "1"
    binds: ClassVar = "state"

    def process(self, view: T2View) -> Mapping[str, Any]:
        return {"n": len(view.datapoints)}


@register_unit
class Sleeps(T2Unit):
    """Counts datapoints after ``seconds`` asleep (a unit stuck in a call for a while)."""

    version = "1"
    binds: ClassVar = "state"

    class Config(UnitConfig):
        seconds: float = 5.0

    config: Config

    def process(self, view: T2View) -> Mapping[str, Any]:
        time.sleep(self.config.seconds)
        return {"n": len(view.datapoints)}
