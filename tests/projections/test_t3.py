"""T3: which stocks a reactor sees, run after run, and what its reactions record."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
from ledger import DatapointAdded, FilterDecided, Ledger, Provenance, ReactionIssued
from projections.t3 import React, Selection
from units import Reaction, Reactor, StockSummary, load_unit

PROV = Provenance(unit="F", unit_version="1", unit_digest="d", config="c")


def decided(stock: str, alert: str, accepted: bool, channel: str = "SN") -> FilterDecided:
    return FilterDecided(
        stream=stock, channel=channel, alert_digest=alert, accepted=accepted,
        code=None if accepted else -1, provenance=PROV,
    )  # fmt: skip


def point(stock: str, n: int) -> DatapointAdded:
    body = {"jd": 2460000.5 + n, "band": "g", "mag": 19.0}
    return DatapointAdded(stream=stock, datapoint_id=f"{stock}:{n}", kind="detection", body=body)


def test_stocks_followed_earlier_and_updated_now_are_selected(
    ledger: Ledger, tmp_path: Path
) -> None:
    out = tmp_path / "collected.txt"
    reactor = load_unit("CollectReactor")({"path": str(out)})
    react = React(ledger, reactor, Selection(channels=frozenset({"SN"})), "t3:test", "run")  # type: ignore[arg-type]
    ledger.append(
        [point("A", 1), decided("A", "a1", True), point("B", 1), decided("B", "b1", False)]
    )
    ledger.append([point("C", 1), decided("C", "c1", True, channel="OTHER")])
    assert react.run()["selected"] == 1
    # New alerts: A's is rejected now but A was accepted before; B and C are not followed
    # by SN; D is new and accepted; E has no new alert.
    ledger.append(
        [point("A", 2), decided("A", "a2", False), point("B", 2), decided("B", "b2", False)]
    )
    ledger.append(
        [point("C", 2), point("D", 1), decided("D", "d1", True), decided("E", "e1", False)]
    )
    assert react.run()["selected"] == 2
    assert react.run()["selected"] == 0  # nothing new
    assert out.read_text().splitlines() == ["A", "A D"]


class PerStock(Reactor):
    """One reaction per stock, about that stock."""

    def react(self, stocks: Sequence[StockSummary]) -> list[Reaction]:
        return [Reaction(target="log", key=f"k:{s.stock}", stock=s.stock) for s in stocks]


def test_a_reaction_about_one_stock_is_recorded_with_it(ledger: Ledger) -> None:
    ledger.append(
        [point("A", 1), decided("A", "a1", True), point("B", 1), decided("B", "b1", True)]
    )
    React(ledger, PerStock({}), Selection(), "t3:stock", "run").run()
    issued = [e for e in ledger.read(types=[ReactionIssued]) if isinstance(e, ReactionIssued)]
    assert [(e.stream, e.stock, e.outcome) for e in issued] == [
        ("reaction:k:A", "A", "delivered"),
        ("reaction:k:B", "B", "delivered"),
    ]
