"""T1 combiners: how a stock's datapoints become the states T2 units work on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from skyledger.ledger.errors import UnitError
from skyledger.units.alerts import Datapoint, DatapointKind
from skyledger.units.base import UnitConfig
from skyledger.units.contracts import Combiner
from skyledger.units.photometry import number
from skyledger.units.views import State, latest_bodies

__all__ = ["LightCurveCombiner", "alert_time", "latest_bodies"]  # latest_bodies: units.views

_SURVEY_IDS = ("candid", "diaSourceId")  # the fields naming the measurement an alert is about


class LightCurveCombiner(Combiner):
    """Makes one state per stock at an alert: its light curve up to the alert's time.

    Of the datapoints known at the alert (one body per id, ``latest_bodies``), of the
    configured kinds, the state holds (in this order):

    1. with ``history: observed`` (the default), only those observed at or before the
       alert (``jd <= at``), whatever order the packets arrived in; datapoints without
       a time are left out then. ``history: received`` holds every one the ledger had
       received by then, as skyledger did before 0.6;
    2. with ``one_per_exposure`` (the default), one detection per exposure: of several
       detections at the same ``jd`` and readout channel ``rcid`` (ZTF issues several
       candidates of one object from one exposure, 0-1 arcsec apart), the one with the
       highest ``candid`` (then id), as AMPEL keeps; an upper limit of an exposure with
       a detection goes too. Datapoints without a ``jd`` or ``rcid`` are never grouped;
    3. with ``max_age_days``, those taken at most that many days before the state's
       latest detection.

    What it leaves out is counted by reason in ``State.set_aside`` (``observed_after``,
    ``no_time``, ``same_exposure``, ``too_old``). A state without any detection is not
    made (``[]``).
    """

    version: ClassVar[str] = "2.0"

    class Config(UnitConfig):
        """Options of the light-curve combiner."""

        kinds: tuple[DatapointKind, ...] = Field(
            ("detection", "upper_limit", "forced"),
            min_length=1,
            description="kinds of datapoints to include (detection, upper_limit, forced)",
        )
        history: Literal["observed", "received"] = Field(
            "observed",
            description="observed: only datapoints observed at or before the alert's time "
            "(jd); received: every datapoint the ledger held at the alert, whenever "
            "observed (the rule before 0.6)",
        )
        one_per_exposure: bool = Field(
            True,
            description="keep one detection per exposure (same jd and rcid): the highest "
            "candid; false keeps every candidate",
        )
        max_age_days: float | None = Field(
            None,
            gt=0,
            description="keep only datapoints within this many days before the latest "
            "detection (null: keep all); datapoints without a time are then dropped",
        )

    config: Config

    def combine(
        self, stock: str, datapoints: Sequence[Datapoint], at: float | None = None
    ) -> list[State]:
        """Return ``[State]`` of the light curve at an alert observed at ``at`` (JD), or
        ``[]`` when it holds no detection."""
        foreign = sorted({dp.stock for dp in datapoints if dp.stock != stock})
        if foreign:
            msg = f"datapoints of other stocks {foreign[:3]} given for {stock!r}"
            raise UnitError(msg, unit=self.name)
        cfg = self.config
        kinds = set(cfg.kinds)
        points = latest_bodies(datapoints)
        aside: Counter[str] = Counter()  # what the rules left out, of the kinds kept

        def narrow(kept: list[Datapoint], reason: str) -> list[Datapoint]:
            aside[reason] += _of_kinds(points, kinds) - _of_kinds(kept, kinds)
            return kept

        until = at if cfg.history == "observed" else None
        if until is not None:
            points = narrow([dp for dp in points if _jd(dp) is not None], "no_time")
            points = narrow(
                [dp for dp in points if (jd := _jd(dp)) is not None and jd <= until],
                "observed_after",
            )
        detected = [dp for dp in points if dp.kind == "detection"]
        if not detected:
            return []
        if cfg.one_per_exposure:
            points = narrow(one_per_exposure(points), "same_exposure")
        if cfg.max_age_days is not None:
            known = [t for t in map(_jd, detected) if t is not None]
            if not known:
                return []
            oldest = max(known) - cfg.max_age_days
            points = narrow(
                [dp for dp in points if (jd := _jd(dp)) is not None and jd >= oldest], "too_old"
            )
        chosen = [dp for dp in points if dp.kind in kinds]
        if not chosen:
            return []
        return [State(stock, tuple(dp.id for dp in chosen), until=until, set_aside=aside)]


def one_per_exposure(datapoints: Iterable[Datapoint]) -> list[Datapoint]:
    """Return the datapoints with one detection per exposure (``jd`` and ``rcid``): the
    highest ``candid`` (then id); an upper limit of an exposure with a detection is left
    out. Datapoints without ``jd`` or ``rcid``, and forced photometry, are all kept."""
    points = list(datapoints)
    best: dict[tuple[float, Any], Datapoint] = {}
    for dp in points:
        key = _exposure(dp)
        if key is not None and dp.kind == "detection":
            held = best.get(key)
            if held is None or _rank(dp) > _rank(held):
                best[key] = dp
    kept = []
    for dp in points:
        key = _exposure(dp)
        if key is None or dp.kind == "forced" or key not in best or best[key] is dp:
            kept.append(dp)
    return kept


def alert_time(
    alert_id: str | None, carried: Iterable[Datapoint], known: Iterable[Datapoint] = ()
) -> float | None:
    """Return when an alert's own measurement was taken (JD): the latest ``jd`` of the
    datapoints it carried, or of a known datapoint whose survey id (``candid``,
    ``diaSourceId``) is the alert's (it may have come first in another alert's history,
    with the same body); None if neither gives a time."""
    times = [_jd(dp) for dp in carried]
    if alert_id is not None:
        times += [_jd(dp) for dp in known if _survey_id(dp) == alert_id]
    found = [t for t in times if t is not None]
    return max(found) if found else None


def _of_kinds(points: Iterable[Datapoint], kinds: Collection[str]) -> int:
    return sum(1 for dp in points if dp.kind in kinds)


def _jd(dp: Datapoint) -> float | None:
    return number(dp.body.get("jd"))


def _survey_id(dp: Datapoint) -> str | None:
    for name in _SURVEY_IDS:
        value = dp.body.get(name)
        if value is not None:
            return str(value)
    return None


def _exposure(dp: Datapoint) -> tuple[float, Any] | None:
    jd, rcid = _jd(dp), dp.body.get("rcid")
    return None if jd is None or rcid is None else (jd, rcid)


def _rank(dp: Datapoint) -> tuple[int, str]:
    candid = dp.body.get("candid")
    return (candid if isinstance(candid, int) and not isinstance(candid, bool) else -1, dp.id)
