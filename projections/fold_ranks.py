"""Folding T2 results into the rank index (``rm_ranks``): per unit configuration, channel
and path the unit ranks by (``T2Unit.ranks``), each stock's latest value."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from skyledger.ledger import ResultDerived
from skyledger.ledger.errors import ConfigError
from skyledger.projections import models as m

__all__ = ["fold_ranks", "ranked_paths", "value_at"]

Row = dict[str, Any]
Fetch = Callable[[type[m.Base], str, Iterable[Any]], list[Row]]
Upsert = Callable[[type[m.Base], Sequence[Row]], None]
_NUMBERS = frozenset({int, float})


@functools.cache
def ranked_paths(unit: str) -> tuple[tuple[str, ...], bool]:
    """Return the paths a T2 unit ranks by, and whether its results are about states
    (a unit that is not installed here ranks by nothing)."""
    from skyledger.units.contracts import T2Unit
    from skyledger.units.registry import load_unit

    try:
        cls = load_unit(unit)
    except ConfigError:
        return (), False
    if not issubclass(cls, T2Unit):
        return (), False
    return tuple(cls.ranks), cls.subject() == "state"


def value_at(body: Any, path: str) -> float | None:
    """Return the number at a dotted path into a result's body, None if there is none."""
    for key in path.split("."):
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return float(body) if type(body) in _NUMBERS else None


def fold_ranks(events: Sequence[ResultDerived], fetch: Fetch, upsert: Upsert) -> None:
    """Write each stock's latest value of every ranked path, per channel of the state the
    result is about (``""`` for results about no state); events come in position order."""
    ranked = [(e, ranked_paths(e.provenance.unit)[0]) for e in events]
    ranked = [(e, paths) for e, paths in ranked if paths]
    if not ranked:
        return
    channels: dict[str, set[str]] = {}
    for row in fetch(m.StateChannel, "state_id", {e.subject for e, _ in ranked}):
        channels.setdefault(row["state_id"], set()).add(row["channel"])
    rows: dict[tuple[str, ...], Row] = {}
    for e, paths in ranked:
        p = e.provenance
        for channel in sorted(channels.get(e.subject, {""})):
            for path in paths:
                key = (p.unit, p.unit_version, p.unit_digest, p.config, channel, path, e.stream)
                rows[key] = {
                    "unit": p.unit, "unit_version": p.unit_version, "unit_digest": p.unit_digest,
                    "config": p.config, "channel": channel, "path": path, "stock": e.stream,
                    "value": value_at(e.body, path), "result_id": e.result_id,
                    "position": e.position,
                }  # fmt: skip
    upsert(m.Rank, list(rows.values()))
