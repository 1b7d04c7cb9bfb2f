"""Time travel: stocks as the ledger held them at a position (``--as-of``, pinned pages).

The ledger only grows, so what was known at position P is its events up to P. A
stock's view as of P is the read model's view folded from those events alone: the
stock's own stream (alerts, datapoints, decisions, states, results), the streams of the
reactions about it, and the runs and configurations they name, each up to P. The fold
is the read model's own, in a scratch SQLite file, so a view as of the head equals the
stock's current view (tests/projections/test_asof.py).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from skyledger.ledger import ConfigurationRegistered, Event, Ledger, Provenance, RunStarted
from skyledger.projections.queries import RunView, StockView, list_runs, stock_view
from skyledger.projections.readmodel import ReadModel

__all__ = ["folded_as_of", "folded_streams", "runs_as_of", "stock_as_of"]


def _events_as_of(ledger: Ledger, streams: Iterable[str], position: int) -> list[Event]:
    events: dict[str, Event] = {}
    for stream in dict.fromkeys(streams):
        events.update((e.id, e) for e in ledger.stream(stream, until=position))
    named = {RunStarted.id_for(run=e.run_id) for e in events.values() if e.run_id}
    configs = {
        ConfigurationRegistered.id_for(config_hash=p.config)
        for e in events.values()
        if isinstance(p := getattr(e, "provenance", None), Provenance)
    }
    for e in ledger.get_many(named | configs).values():
        if (e.position or 0) <= position:
            events[e.id] = e
    return sorted(events.values(), key=lambda e: e.position or 0)


@contextmanager
def folded_streams(ledger: Ledger, streams: Iterable[str], position: int) -> Iterator[ReadModel]:
    """Yield a scratch read model of some streams' events up to ``position`` (and the
    runs and configurations they name)."""
    with tempfile.TemporaryDirectory(prefix="skyledger-as-of-") as folder:
        model = ReadModel(f"sqlite:///{Path(folder) / 'as-of.sqlite'}")
        with model:
            model.create()
            model.apply(_events_as_of(ledger, streams, position))
            yield model


def folded_as_of(
    ledger: Ledger, stocks: Mapping[str, Sequence[str]], position: int
) -> AbstractContextManager[ReadModel]:
    """Return (to enter) a scratch read model of the stocks as the ledger held them at
    ``position``.

    ``stocks`` maps each stock to the idempotency keys of the reactions about it (the
    read model's, of today: those intended after ``position`` are left out here).
    """
    streams = [n for s, keys in stocks.items() for n in (s, *(f"reaction:{k}" for k in keys))]
    return folded_streams(ledger, streams, position)


def stock_as_of(
    ledger: Ledger, stock: str, position: int, reaction_keys: list[str]
) -> StockView | None:
    """Return a stock's view as the ledger held it at ``position`` (None: not known
    then). ``reaction_keys`` are the idempotency keys of reactions about the stock."""
    with folded_as_of(ledger, {stock: reaction_keys}, position) as model:
        return stock_view(model, stock)


def _time_at(ledger: Ledger, position: int) -> dt.datetime | None:
    """Return the time of the event at ``position`` (None: none there)."""
    found = next(iter(ledger.read(position, position)), None) if position > 0 else None
    return None if found is None else found.time


def runs_as_of(
    model: ReadModel, ledger: Ledger, position: int, limit: int | None = None, counts: bool = True
) -> list[RunView]:
    """Return the runs as they stood at ``position``: those started at or before it,
    finished (or failed) only if that was recorded at or before it, and, with
    ``counts``, the events each had recorded by then; ``gone`` is judged at the time
    of the event at ``position``. A run still going at ``position`` is folded again
    from its own stream up to there, and its events are counted in the ledger from its
    start to ``position`` (a read of that span: leave ``counts`` out to spare it)."""
    now = _time_at(ledger, position)
    found = list_runs(model, limit, now=now, until=position)
    going = [r for r in found if r.finish_position is None or r.finish_position > position]
    if not going:
        return found
    with folded_streams(ledger, [f"run:{r.run_id}" for r in going], position) as then:
        again = {r.run_id: r for r in list_runs(then, None, now=now)}
    tallies = _counts(ledger, going, position) if counts else {}
    return [
        r if r.run_id not in again
        else again[r.run_id].model_copy(update={"counts": tallies.get(r.run_id, {})})
        for r in found
    ]  # fmt: skip


def _counts(ledger: Ledger, runs: Sequence[RunView], position: int) -> dict[str, dict[str, int]]:
    """Return the events each run recorded from its start up to ``position``, by type."""
    wanted = {r.run_id for r in runs}
    start = min(r.start_position or 1 for r in runs)
    tally: Counter[tuple[str, str]] = Counter(
        (e.run_id, type(e).__name__) for e in ledger.read(start, position) if e.run_id in wanted
    )
    found: dict[str, dict[str, int]] = {}
    for (run, kind), n in sorted(tally.items()):
        found.setdefault(run, {})[kind] = n
    return found
