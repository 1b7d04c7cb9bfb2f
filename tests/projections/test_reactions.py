"""Reactions listed as of a position: a delivery that went on after it shows as it stood
there, and a page read later as of a position equals the page read when the ledger
stood there (real ZTF packets, test units)."""

from __future__ import annotations

from pathlib import Path

import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
from skyledger.ledger import Ledger
from skyledger.projections.reactions import ReactionQuery, list_reactions
from skyledger.projections.readmodel import ReadModel, readmodel_url
from skyledger.projections.scope import Scope
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.runners.replay import ReplayRunner
from skyledger.units.sources import FileSource

SN = sorted((Path(__file__).resolve().parents[1] / "data" / "ztf" / "ZTF21abiuvdk").glob("*.avro"))
JOB = """
name: react
channels: [{name: A, filter: {unit: MinDetections, config: {n: 1}}}]
combiner: {unit: AllPoints}
t2: [{unit: CountPoints}]
t3: [{unit: CollectReactor, config: {path: OUT}}]
"""


def test_a_page_as_of_a_position_is_the_page_read_there(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    first = JOB.split("t3:")[0]  # a run with no reactor, then a variant with one
    second = JOB.replace("OUT", str(tmp_path / "two.txt"))
    everything, query = ReactionQuery(), ReactionQuery(channel="A")
    with Ledger.open(url) as ledger, ReadModel(readmodel_url(url)) as model:
        model.create()
        LocalRunner(parse_job(first), first, ledger, [FileSource({"paths": [str(f) for f in SN]})],
                    read_model=False).run()  # fmt: skip
        ReplayRunner(parse_job(second), second, ledger, "v2", read_model=False).run()
        model.catch_up(ledger)
        then = list_reactions(model, ledger, query, limit=1000)
        assert [x.status for x in then.items] == ["intended"]  # a replay delivers nothing
        ReplayRunner(parse_job(second), second, ledger, "v2", read_model=False,
                     deliver=True).run()  # fmt: skip
        model.catch_up(ledger)
        now = list_reactions(model, ledger, everything, limit=1000)
        assert {x.status for x in now.items} == {"delivered"}
        assert now.position > then.position
        again = list_reactions(model, ledger, query, as_of=then.position, limit=1000)
        assert again.items == then.items  # as they stood: intended, not delivered
        paged, cursor = [], None
        while True:  # page by page as of that position, the same again
            page = list_reactions(model, ledger, query, as_of=then.position, cursor=cursor,
                                  limit=1)  # fmt: skip
            paged += page.items
            cursor = page.next
            if cursor is None:
                break
        assert tuple(paged) == then.items
        intended = list_reactions(model, ledger, ReactionQuery(status="intended"),
                                  as_of=then.position, limit=1000)  # fmt: skip
        assert [x.idempotency_key for x in intended.items] == [
            x.idempotency_key for x in then.items if x.status == "intended"]  # fmt: skip
        nobody = list_reactions(model, ledger, everything, scope=Scope(channels=frozenset({"B"})))
        assert nobody.items == ()
