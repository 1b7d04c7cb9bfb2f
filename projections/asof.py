"""Time travel: stocks as the ledger held them at a position (``--as-of``, pinned pages).

The ledger only grows, so what was known at position P is its events up to P. A
stock's view as of P is the read model's view folded from those events alone: the
stock's own stream (alerts, datapoints, decisions, states, results), the streams of the
reactions about it, and the runs and configurations they name, each up to P. The fold
is the read model's own, in a scratch SQLite file, so a view as of the head equals the
stock's current view (tests/projections/test_asof.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from ledger import ConfigurationRegistered, Event, Ledger, Provenance, canonical_bytes
from projections.lineage import run_event_id
from projections.queries import StockView, stock_view
from projections.readmodel import ReadModel

__all__ = ["folded_as_of", "stock_as_of"]


def _events_as_of(
    ledger: Ledger, stocks: Mapping[str, Sequence[str]], position: int
) -> list[Event]:
    events: dict[str, Event] = {}
    for stock, reaction_keys in stocks.items():
        events.update((e.id, e) for e in ledger.stream(stock, until=position))
        for key in reaction_keys:
            events.update((e.id, e) for e in ledger.stream(f"reaction:{key}", until=position))
    named = {run_event_id(e.run_id) for e in events.values() if e.run_id}
    configs = {
        ConfigurationRegistered.id_of(canonical_bytes({"config_hash": p.config}))
        for e in events.values()
        if isinstance(p := getattr(e, "provenance", None), Provenance)
    }
    for e in ledger.get_many(named | configs).values():
        if (e.position or 0) <= position:
            events[e.id] = e
    return sorted(events.values(), key=lambda e: e.position or 0)


@contextmanager
def folded_as_of(
    ledger: Ledger, stocks: Mapping[str, Sequence[str]], position: int
) -> Iterator[ReadModel]:
    """Yield a scratch read model of the stocks as the ledger held them at ``position``.

    ``stocks`` maps each stock to the idempotency keys of the reactions about it (the
    read model's, of today: those intended after ``position`` are left out here).
    """
    with tempfile.TemporaryDirectory(prefix="skyledger-as-of-") as folder:
        model = ReadModel(f"sqlite:///{Path(folder) / 'as-of.sqlite'}")
        with model:
            model.create()
            model.apply(_events_as_of(ledger, stocks, position))
            yield model


def stock_as_of(
    ledger: Ledger, stock: str, position: int, reaction_keys: list[str]
) -> StockView | None:
    """Return a stock's view as the ledger held it at ``position`` (None: not known
    then). ``reaction_keys`` are the idempotency keys of reactions about the stock."""
    with folded_as_of(ledger, {stock: reaction_keys}, position) as model:
        return stock_view(model, stock)
