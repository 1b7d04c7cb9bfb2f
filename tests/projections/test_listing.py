"""The query layer's listings on real ZTF alerts, on both backends: pages pinned to a
position neither shift nor repeat while the ledger grows, ``as_of`` shows rows as they
were, cone searches find exactly what a scan finds (through the HEALPix index), results
list by a value in their bodies, and a scope sees only its channels' results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
from skyledger.ledger import Ledger
from skyledger.ledger.errors import NotFound, QueryError
from skyledger.projections import models as m
from skyledger.projections.listing import ResultQuery, StockQuery, list_results, list_stocks
from skyledger.projections.queries import StockRow
from skyledger.projections.readmodel import ReadModel, readmodel_url
from skyledger.projections.scope import Scope
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.units.celestial import separation_deg
from skyledger.units.sources import FileSource

DATA = Path(__file__).resolve().parents[1] / "data" / "ztf"
SN = sorted((DATA / "ZTF21abiuvdk").glob("*.avro"))
NIGHT = DATA / "night"
FIRST = [NIGHT / "fink-client_sample_part-00001_n54.avro", *SN[:12]]
SECOND = [NIGHT / "fink-client_sample_part-00002_n56.avro", *SN[12:]]

JOB = """
name: listing
channels:
  - {name: MANY, filter: {unit: MinDetections, config: {n: 3}}, autocomplete: true}
  - {name: ALL}
combiner: {unit: AllPoints}
t2: [{unit: CountPoints}, {unit: TotalFromCounts}]
"""


def run(ledger: Ledger, files: list[Path]) -> None:
    source = FileSource({"paths": [str(f) for f in files]})
    LocalRunner(parse_job(JOB), JOB, ledger, [source], read_model=False).run()


def model_of(ledger: Ledger) -> ReadModel:
    model = ReadModel(readmodel_url(ledger.settings.ledger))
    model.create()
    model.catch_up(ledger)
    return model


def every_page(pages: Any) -> list[Any]:
    """Return the rows of every page a listing gives, following its cursors."""
    rows: list[Any] = []
    cursor = None
    while True:
        page = pages(cursor)
        rows.extend(page.items)
        if page.next is None:
            return rows
        cursor = page.next


def test_pages_are_pinned_and_as_of_shows_rows_as_they_were(ledger: Ledger) -> None:
    run(ledger, FIRST)
    with model_of(ledger) as model:
        middle = model.position()
        before = list_stocks(model, ledger, StockQuery(), limit=1000)
        assert before.position == middle
        assert before.next is None
        assert len(before.items) > 40
        first = list_stocks(model, ledger, StockQuery(), limit=7)
        assert first.items == before.items[:7]
        run(ledger, SECOND)  # new stocks, and newer alerts of ZTF21abiuvdk
        model.catch_up(ledger)
        rest = every_page(lambda c: list_stocks(model, ledger, StockQuery(), cursor=c, limit=7)
                          if c else first)  # fmt: skip
        assert rest == list(before.items)  # nothing shifted, repeated or changed
        now = list_stocks(model, ledger, StockQuery(), limit=1000)
        assert now.position == ledger.head() > middle
        assert len(now.items) > len(before.items)
        sn_now = next(s for s in now.items if s.stock == "ZTF21abiuvdk")
        sn_then = next(s for s in before.items if s.stock == "ZTF21abiuvdk")
        assert (sn_then.n_alerts, sn_now.n_alerts) == (12, 34)
        assert now.items[0] == sn_now  # the latest change
        assert list_stocks(model, ledger, StockQuery(), as_of=middle, limit=1000) == before
        by_id = every_page(lambda c: list_stocks(
            model, ledger, StockQuery(order="stock", channel="MANY"), cursor=c, limit=5,
            as_of=middle))  # fmt: skip
        assert [s.stock for s in by_id] == sorted(
            s.stock for s in before.items if "MANY" in s.channels
        )
        since = list_stocks(model, ledger, StockQuery(since=middle), limit=1000)
        assert {s.stock for s in since.items} == {
            s.stock for s in now.items if s.last_position > middle
        }
        with pytest.raises(QueryError, match="other filters"):
            list_stocks(model, ledger, StockQuery(channel="ALL"), cursor=first.next)
        with pytest.raises(QueryError, match="not one this listing gave"):
            list_stocks(model, ledger, StockQuery(), cursor="garbage!")
        with pytest.raises(NotFound, match="no channel 'MANY'"):
            list_stocks(model, ledger, StockQuery(channel="MANY"),
                        scope=Scope(channels=frozenset({"ALL"})))  # fmt: skip


def near(rows: list[StockRow], ra: float, dec: float, radius_arcsec: float) -> list[str]:
    return sorted(
        r.stock
        for r in rows
        if r.ra is not None
        and r.dec is not None
        and separation_deg(ra, dec, r.ra, r.dec) * 3600 <= radius_arcsec
    )


def test_a_cone_search_finds_what_a_scan_finds_through_the_index(ledger: Ledger) -> None:
    run(ledger, FIRST + SECOND)
    with model_of(ledger) as model:
        every = list(list_stocks(model, ledger, StockQuery(), limit=1000).items)
        placed = [s for s in every if s.ra is not None and s.dec is not None]
        assert len(placed) == len(every)  # every stock here has detections
        sn = next(s for s in every if s.stock == "ZTF21abiuvdk")
        assert sn.ra == pytest.approx(0.81429, abs=1e-4)  # its detections' mean
        assert sn.dec == pytest.approx(16.14569, abs=1e-4)
        for probe in placed[::9]:
            assert probe.ra is not None
            assert probe.dec is not None
            for radius in (2.0, 30.0, 3600.0, 9 * 3600.0):
                query = StockQuery(ra=probe.ra, dec=probe.dec, radius_arcsec=radius)
                found = every_page(lambda c, q=query: list_stocks(model, ledger, q, cursor=c,
                                                                  limit=4))  # fmt: skip
                assert sorted(s.stock for s in found) == near(every, probe.ra, probe.dec, radius)
                assert probe.stock in {s.stock for s in found}
                distances = [separation_deg(probe.ra, probe.dec, s.ra or 0, s.dec or 0)
                             for s in found]  # fmt: skip
                assert distances == sorted(distances)  # nearest first
        with model.engine.connect() as conn:  # the candidates come through the index
            if conn.dialect.name == "sqlite":
                plan = conn.execute(text(
                    "EXPLAIN QUERY PLAN SELECT stock FROM rm_stocks WHERE hpx >= 10 AND hpx < 20"
                )).all()  # fmt: skip
                assert "rm_stocks_hpx" in str(plan)
            else:
                conn.execute(text("SET enable_seqscan = off"))
                plan = conn.execute(text(
                    "EXPLAIN SELECT stock FROM rm_stocks WHERE hpx >= 10 AND hpx < 20"
                )).all()  # fmt: skip
                assert "rm_stocks_hpx" in str(plan)
        with pytest.raises(QueryError, match="ra, dec and radius together"):
            list_stocks(model, ledger, StockQuery(ra=1.0, dec=2.0))
        with pytest.raises(QueryError, match="dec 95"):
            list_stocks(model, ledger, StockQuery(ra=1.0, dec=95.0, radius_arcsec=3))


def test_results_by_value_latest_per_stock_and_only_the_scopes_channels(ledger: Ledger) -> None:
    run(ledger, FIRST + SECOND)
    with model_of(ledger) as model:
        query = ResultQuery(entry="TotalFromCounts", path="total", min=3, order="desc")
        found = every_page(lambda c: list_results(model, query, cursor=c, limit=10))
        values = [r.value for r in found]
        assert values == sorted(values, reverse=True)
        assert len(found) > 10
        assert all(r.body is not None and r.body["total"] == r.value >= 3 for r in found)
        assert all(r.unit == "TotalFromCounts" for r in found)
        with model.engine.connect() as conn:
            ok = conn.execute(select(m.Result.result_id, m.Result.body, m.Result.stock).where(
                m.Result.unit == "TotalFromCounts", m.Result.status == "ok"
            )).all()  # fmt: skip
            channels: dict[str, set[str]] = {}
            for state_id, channel in conn.execute(
                select(m.StateChannel.state_id, m.StateChannel.channel)
            ):
                channels.setdefault(state_id, set()).add(channel)
            subjects = dict(conn.execute(select(m.Result.result_id, m.Result.subject)).all())
        assert {r.result_id for r in found} == {i for i, b, _ in ok if b["total"] >= 3}
        latest = list_results(model, ResultQuery(entry="TotalFromCounts", path="total",
                                                 latest=True), limit=1000)  # fmt: skip
        assert len({r.stock for r in latest.items}) == len(latest.items)
        assert len(latest.items) == len({s for _, _, s in ok})
        sn = next(r for r in latest.items if r.stock == "ZTF21abiuvdk")
        assert sn.value == max(b["total"] for _, b, s in ok if s == "ZTF21abiuvdk")
        many = Scope(channels=frozenset({"MANY"}))
        mine = list_results(model, ResultQuery(entry="TotalFromCounts"), scope=many, limit=1000)
        assert mine.items
        assert {r.result_id for r in mine.items} == {
            i for i, _, _ in ok if "MANY" in channels[subjects[i]]
        }
        everyone = list_results(model, ResultQuery(entry="TotalFromCounts"), limit=1000)
        assert len(everyone.items) > len(mine.items)  # ALL's results are not MANY's
        with pytest.raises(NotFound, match=r"no T2 entry 'Nope'.*CountPoints, TotalFromCounts"):
            list_results(model, ResultQuery(entry="Nope"))
        with pytest.raises(QueryError, match="needs a path"):
            list_results(model, ResultQuery(min=1))
        with pytest.raises(QueryError, match="keys joined by dots"):
            list_results(model, ResultQuery(path="a..b"))


def test_a_channels_stocks_ranked_by_a_value_come_through_the_rank_index(ledger: Ledger) -> None:
    run(ledger, FIRST)
    with model_of(ledger) as model:
        query = ResultQuery(entry="TotalFromCounts", path="total", latest=True, channel="MANY")

        def expected() -> list[tuple[str, float]]:
            with model.engine.connect() as conn:
                many = set(conn.execute(select(m.StateChannel.state_id).where(
                    m.StateChannel.channel == "MANY")).scalars())  # fmt: skip
                rows = conn.execute(select(m.Result.stock, m.Result.position, m.Result.body,
                                           m.Result.result_id, m.Result.subject).where(
                    m.Result.unit == "TotalFromCounts", m.Result.status == "ok")).all()  # fmt: skip
            latest: dict[str, tuple[int, float, str]] = {}
            for stock, position, body, result_id, subject in rows:
                if subject in many and position > latest.get(stock, (-1, 0.0, ""))[0]:
                    latest[stock] = (position, float(body["total"]), result_id)
            ordered = sorted(latest.values(), key=lambda v: (-v[1], v[2]))
            return [(result_id, total) for _, total, result_id in ordered]

        with model.engine.connect() as conn:
            indexed = conn.execute(select(m.Rank.stock).where(m.Rank.channel == "MANY")).all()
        assert indexed  # the index holds the channel's latest totals
        first = list_results(model, query, limit=5)
        assert [(r.result_id, r.value) for r in first.items] == expected()[:5]
        run(ledger, SECOND)  # newer results for some stocks: later pages read the results
        model.catch_up(ledger)
        rest = every_page(lambda c: list_results(model, query, cursor=c, limit=5)
                          if c else first)  # fmt: skip
        middle = first.position
        with model.engine.connect() as conn:
            assert conn.execute(select(m.Rank.stock).where(m.Rank.position > middle)).first()
        now = list_results(model, query, limit=1000)
        assert [(r.result_id, r.value) for r in now.items] == expected()
        then = list_results(model, query, as_of=middle, limit=1000).items
        assert rest == list(then)  # pages pinned to the first's position, index or not
        assert len({r.stock for r in rest}) == len(rest)
