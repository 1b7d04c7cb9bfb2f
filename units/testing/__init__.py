"""A test kit for unit authors: run a unit as the pipeline would, without a ledger.

    from skyledger.units.testing import check_determinism, datapoints_from, run_unit

    points = datapoints_from("examples/data/ztf/ZTF21abiuvdk")
    result = run_unit(MyT2Unit(), points)          # what the ledger would store
    check_determinism(MyT2Unit())                  # generated ZTF, LSST and ELAsTiCC
                                                   # stocks: same bytes twice, in another
                                                   # process, in any order

``check_determinism`` (``units.testing.determinism``) runs a unit on the hypothesis
strategies of ``units.testing.strategies`` (alert packets, datapoints, states and light
curves of each survey) and reports the smallest input that gives other bytes;
``assert_deterministic`` checks one given set of datapoints.

``run_unit`` gives the unit the view the T2 projector gives it (datapoints received
several times keep the projector's body, the subject follows ``binds``) and returns the
result after the same canonical-JSON round trip the ledger applies, so a numpy scalar,
a set or bytes fail here, in the author's test, and not in a run.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from skyledger.ledger.canonical import canonical_bytes
from skyledger.ledger.errors import EncodingError, UnitError
from skyledger.units.alerts import Alert, Datapoint
from skyledger.units.contracts import Shaper, T2Unit
from skyledger.units.registry import load_unit
from skyledger.units.sources import iter_packets
from skyledger.units.views import LightCurve, State, T2View, latest_bodies

__all__ = [
    "assert_deterministic",
    "check_determinism",
    "datapoints_from",
    "run_unit",
    "view_for",
]

_SHAPERS = {"ztf": "ZtfShaper", "lsst": "LsstShaper", "elasticc": "ElasticcShaper"}


def datapoints_from(paths: str | Path | Iterable[str | Path]) -> list[Datapoint]:
    """Return the datapoints the built-in shapers make of the alerts in files or folders."""
    if isinstance(paths, str | Path):
        paths = [paths]
    shapers: dict[str, Shaper] = {}
    points: list[Datapoint] = []
    for packet in iter_packets(paths):
        if not isinstance(packet, Alert):
            continue
        if packet.survey not in shapers:
            unit = load_unit(_SHAPERS[packet.survey])()
            assert isinstance(unit, Shaper)
            shapers[packet.survey] = unit
        points += shapers[packet.survey].shape(packet)
    return points


def view_for(
    unit: T2Unit,
    datapoints: Sequence[Datapoint],
    dependencies: Mapping[str, Mapping[str, Any]] | None = None,
) -> T2View:
    """Return the view the T2 projector would give ``unit`` for one stock's datapoints
    (for a datapoint-bound unit: the first datapoint)."""
    points = latest_bodies(datapoints)
    if not points:
        raise UnitError("no datapoints to build a view from", unit=unit.name)
    stock = points[0].stock
    deps = dict(dependencies or {})
    if unit.binds == "datapoint":
        return T2View(stock, points[0].id, (points[0],), None, deps)
    subject = stock if unit.binds == "stock" else State(stock, tuple(p.id for p in points)).id
    curve = LightCurve.of(stock, points) if unit.binds == "lightcurve" else None
    return T2View(stock, subject, tuple(points), curve, deps)


def run_unit(
    unit: T2Unit,
    datapoints: Sequence[Datapoint],
    dependencies: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run a T2 unit on one stock's datapoints and return its result as the ledger keeps it."""
    body = unit.process(view_for(unit, datapoints, dependencies))
    try:
        stored: dict[str, Any] = orjson.loads(canonical_bytes(dict(body)))
    except (EncodingError, TypeError, ValueError) as exc:
        msg = f"{unit.name} returned a result the ledger cannot store: {exc}"
        raise UnitError(msg, unit=unit.name) from exc
    return stored


def assert_deterministic(
    unit: T2Unit,
    datapoints: Sequence[Datapoint],
    dependencies: Mapping[str, Mapping[str, Any]] | None = None,
    shuffles: int = 3,
) -> None:
    """Raise AssertionError unless the unit gives byte-identical results for the same
    datapoints in any order and from a fresh instance with the same configuration."""
    expected = canonical_bytes(run_unit(unit, datapoints, dependencies))
    rnd = random.Random(0)
    for attempt in range(shuffles):
        shuffled = list(datapoints)
        rnd.shuffle(shuffled)
        fresh = type(unit)(unit.config)
        got = canonical_bytes(run_unit(fresh, shuffled, dependencies))
        if got != expected:
            msg = (
                f"{unit.name} is not deterministic: shuffle {attempt + 1} gave "
                f"{got[:200]!r}, expected {expected[:200]!r}"
            )
            raise AssertionError(msg)


from skyledger.units.testing.determinism import check_determinism  # noqa: E402  (it uses run_unit)
