"""What units receive and return: states, light curves, views for T2, decisions, reactions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skyledger.ledger.ids import state_id
from skyledger.units.alerts import Datapoint

__all__ = [
    "Decision",
    "LightCurve",
    "Reaction",
    "State",
    "StockSummary",
    "T2View",
    "curve_of",
    "latest_bodies",
]


@dataclass(frozen=True, slots=True)
class Decision:
    """A filter's verdict on one alert for one channel.

    Accepted (optionally into a ``group`` that gates which T1/T2 units run), or rejected
    with a negative ``code`` saying why. Build with :meth:`accept` and :meth:`reject`.
    """

    accepted: bool
    code: int | None = None
    group: int | None = None
    reason: str = ""

    @classmethod
    def accept(cls, group: int | None = None) -> Decision:
        """Return an acceptance, into ``group`` if given."""
        return cls(True, None, group)

    @classmethod
    def reject(cls, code: int, reason: str = "") -> Decision:
        """Return a rejection with a negative ``code`` (and a short reason); a code of an
        ``IntEnum`` is kept as its plain int."""
        if code >= 0:
            raise ValueError(f"rejection codes are negative, got {code}")
        return cls(False, int(code), None, reason)


@dataclass(frozen=True, slots=True)
class State:
    """A set of a stock's datapoints that T2 units work on (a T1 result).

    ``until`` is the time (JD) the state holds datapoints up to, when the combiner cut
    it at its alert's time; ``set_aside`` counts, by reason, the datapoints known at the
    alert that the combiner left out (``{"observed_after": 3, "same_exposure": 1}``).
    Neither is part of the state's id: the datapoints are.
    """

    stock: str
    datapoint_ids: tuple[str, ...]
    until: float | None = None
    set_aside: Mapping[str, int] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "datapoint_ids", tuple(sorted(set(self.datapoint_ids))))
        kept = {k: int(v) for k, v in sorted(self.set_aside.items()) if v}
        object.__setattr__(self, "set_aside", kept)

    @property
    def id(self) -> str:
        """Return the state's id: the hash of its sorted datapoint ids."""
        return state_id(self.datapoint_ids)


@dataclass(frozen=True, slots=True)
class LightCurve:
    """A state's photometry sorted by time: detections, upper limits and forced points."""

    stock: str
    detections: tuple[Datapoint, ...]
    upper_limits: tuple[Datapoint, ...] = ()
    forced: tuple[Datapoint, ...] = ()

    @classmethod
    def of(cls, stock: str, datapoints: Sequence[Datapoint]) -> LightCurve:
        """Return the light curve of these datapoints."""

        def pick(kind: str) -> tuple[Datapoint, ...]:
            chosen = [d for d in datapoints if d.kind == kind]
            return tuple(sorted(chosen, key=lambda d: (d.body.get("jd") or 0.0, d.id)))

        return cls(stock, pick("detection"), pick("upper_limit"), pick("forced"))

    def bands(self) -> list[str]:
        """Return the bands with detections, sorted."""
        return sorted({str(d.body.get("band")) for d in self.detections if d.body.get("band")})

    def band(self, band: str) -> tuple[list[float], list[float], list[float]]:
        """Return (jd, mag, magerr) of the detections in one band with a magnitude."""
        rows = [
            (d.body["jd"], d.body["mag"], d.body.get("magerr") or 0.0)
            for d in self.detections
            if d.body.get("band") == band and d.body.get("mag") is not None
        ]
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


@dataclass(frozen=True, slots=True)
class T2View:
    """What a T2 unit receives: its subject and, for tied units, the results it needs.

    ``subject`` is the id of what the result is about (the stock, a datapoint or a state);
    ``datapoints`` are the subject's datapoints; ``lightcurve`` is filled for units bound
    to the light-curve view; ``dependencies`` maps each unit named in ``depends_on`` to
    its result body for the same subject.
    """

    stock: str
    subject: str
    datapoints: tuple[Datapoint, ...]
    lightcurve: LightCurve | None = None
    dependencies: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StockSummary:
    """What a T3 unit sees of one selected stock, at one of its states.

    ``lightcurve`` is the state's (the datapoints as they were when it was made);
    ``results`` maps each of the job's T2 entries (by entry name) to its result for that
    state or its stock; ``channels`` are the job's channels that followed the stock
    then; ``state`` is the state's id.
    """

    stock: str
    channels: tuple[str, ...]
    lightcurve: LightCurve
    results: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    state: str | None = None


@dataclass(frozen=True, slots=True)
class Reaction:
    """A reaction a T3 unit asks for: where it goes and what it carries.

    ``key`` identifies the reaction for idempotency: a key intended once is delivered
    once (a delivery that may have been lost is tried again with the same key), however
    often the ledger is replayed. ``stock``
    names the stock it is about, if it is about one (it is recorded with the reaction
    and shown in that stock's journal); ``about`` names the stocks a reaction on several
    is made from (a report's candidates), so its lineage names their states and results
    and not those of every stock it was shown.
    """

    target: str
    key: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    stock: str | None = None
    about: tuple[str, ...] = ()


def latest_bodies(datapoints: Sequence[Datapoint]) -> list[Datapoint]:
    """Return one datapoint per id, sorted by id: the body with the most fields, of equals the last.

    A re-measured datapoint keeps its id and arrives again with another body (ZTF repeats
    each detection in later alerts' history with fewer fields and rounded values). The T1
    projector applies this same function to the ledger (``projections.t1.history_of``),
    so a unit given duplicates sees what it would see through the projector.
    """
    unique: dict[str, Datapoint] = {}
    for dp in datapoints:
        kept = unique.get(dp.id)
        if kept is None or len(dp.body) >= len(kept.body):
            unique[dp.id] = dp
    return [unique[key] for key in sorted(unique)]


def curve_of(view: T2View) -> LightCurve:
    """Return the view's light curve with one body per datapoint id (:func:`latest_bodies`),
    sorted by (jd, id): built from ``view.datapoints`` when the view has no light curve."""
    source: Sequence[Datapoint]
    if view.lightcurve is None:
        source = view.datapoints
    else:
        source = (
            *view.lightcurve.detections,
            *view.lightcurve.upper_limits,
            *view.lightcurve.forced,
        )
    return LightCurve.of(view.stock, latest_bodies(source))
