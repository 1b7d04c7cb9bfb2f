"""The change feed up to a position is what it was when the ledger stood there, at every
position of a story whose result fails twice before it is derived and whose reaction is
claimed, fails and is delivered (the rows of both move on after many positions)."""

from __future__ import annotations

from pathlib import Path

from skyledger.ledger import Ledger
from skyledger.projections.changes import changes
from skyledger.projections.readmodel import ReadModel, readmodel_url
from skyledger.projections.scope import Scope
from tests.projections.test_readmodel import story


def test_the_change_feed_until_each_position_is_the_feed_read_there(
    ledger: Ledger, tmp_path: Path
) -> None:
    ledger.append(story())
    stored = list(ledger.read())
    with ReadModel(readmodel_url(ledger.settings.ledger)) as now:
        now.create()
        now.catch_up(ledger)
        kinds = set()
        for index, event in enumerate(stored):
            position = event.position or 0
            with ReadModel(f"sqlite:///{tmp_path / f'then-{index}.sqlite'}") as then:
                then.create()
                then.apply(stored[: index + 1])
                for since in (0, position // 2):
                    read_then = changes(then, ledger, Scope(), since)
                    assert changes(now, ledger, Scope(), since, until=position) == read_then
                    kinds |= {(c["kind"], c.get("status")) for c in read_then[0]}
    assert {("result", "failed"), ("result", "ok"), ("reaction", "claimed")} <= kinds
