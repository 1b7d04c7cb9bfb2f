"""The read models: every table from a realistic ledger, rebuilt identically, exactly once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from rich.console import Console
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from skyledger.ledger import (
    AlertReceived,
    ConfigError,
    DatapointAdded,
    DeliveryClaimed,
    Event,
    FilterDecided,
    Ledger,
    Provenance,
    ReactionIntended,
    ReactionIssued,
    ResultDerived,
    ResultFailed,
    RunFinished,
    RunHeartbeat,
    RunStarted,
    StateCombined,
)
from skyledger.ledger.errors import ProjectionError, TrackingConflict
from skyledger.projections import models as m
from skyledger.projections.listing import StockQuery, list_stocks
from skyledger.projections.queries import list_runs, run_summary, stock_view
from skyledger.projections.readmodel import Fold, ReadModel, readmodel_url
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.runners.show import show_runs
from skyledger.units.sources import FileSource
from tests.ledger.samples import one_of_each

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data" / "ztf"
SN, NIGHT = EXAMPLES / "ZTF21abiuvdk", EXAMPLES / "night"
T0 = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
A, B, L = "ZTF21aaaaaaa", "ZTF21bbbbbbb", "lsst:170000000001"


def prov(unit: str, config: str = "c1", duration_s: float = 0.01, code: str = "d") -> Provenance:
    """Return the provenance of a unit's computation."""
    return Provenance(
        unit=unit, unit_version="1.0", unit_digest=code * 32, config=config, duration_s=duration_s
    )


def story() -> list[Event]:
    """Return the events of one realistic run over three stocks, in ledger order."""
    n = iter(range(1000))

    def env() -> dict[str, Any]:
        return {"time": T0 + dt.timedelta(minutes=next(n)), "run_id": "run-1"}

    def alert(stock: str, digest: str, error: str | None = None) -> AlertReceived:
        where = {"source": "night.tar", "locator": f"{digest}.avro#0"}
        if error is not None:
            return AlertReceived(stream=stock, digest=digest * 32, error=error, **where, **env())
        ids = {"alert_id": f"{digest}00", "schema_name": "ztf-4.02"}
        return AlertReceived(stream=stock, digest=digest * 32, **ids, **where, **env())

    def dp(stock: str, dp_id: str, kind: str, **body: Any) -> DatapointAdded:
        return DatapointAdded(stream=stock, datapoint_id=dp_id * 32, kind=kind, body=body, **env())

    def decide(stock: str, digest: str, channel: str, ok: bool, config: str = "f1") -> Event:
        how = {"group": 1} if ok else {"code": -3, "reason": "too faint"}
        what = {"channel": channel, "alert_digest": digest * 32, "accepted": ok}
        on = {"alert": alert(stock, digest).id}
        return FilterDecided(
            stream=stock, **what, **on, **how, provenance=prov("F", config), **env()
        )

    def failed(result: str, attempt: int) -> ResultFailed:
        error = {"error": f"ValueError: attempt {attempt}\nmore", "traceback": "Traceback ..."}
        what = {"result_id": result * 32, "subject": "s" * 32, "attempt": attempt}
        return ResultFailed(
            stream=A, **what, **error, retry_after_s=30.0, provenance=prov("T2Fit"), **env()
        )

    def react(outcome: str, attempt: int, detail: str = "", key: str = "k") -> ReactionIssued:
        what: dict[str, Any] = {"idempotency_key": key * 32, "target": "http://hook"}
        if key != "k":  # recorded before the outbox: no intent, the payload with the outcome
            what["payload"] = {"report": "nightly"}
        what["stock"] = A if key == "k" else None  # as T3 records them
        return ReactionIssued(
            stream=f"reaction:{key * 32}", **what, outcome=outcome, attempt=attempt,
            detail=detail, provenance=prov("T3Hook"), **env(),
        )  # fmt: skip

    def claim(attempt: int) -> DeliveryClaimed:
        return DeliveryClaimed(stream=f"reaction:{'k' * 32}", idempotency_key="k" * 32,
                               attempt=attempt, provenance=prov("T3Hook"), **env())  # fmt: skip

    state = {"stream": A, "state_id": "s" * 32, "datapoint_ids": ("1" * 32, "2" * 32)}
    at_a = {"alert": alert(A, "a").id, "bodies": "b" * 32}
    at_c = {"alert": alert(A, "c").id, "bodies": "c" * 32}
    job = {"job_hash": "j" * 32, "job_text": "channels: [SN]", "packages": {"skyledger": "0.1"}}
    return [
        RunStarted(
            stream="run:run-1",
            run="run-1",
            **job,
            host="h",
            user="u",
            argv=("run", "job.yaml"),
            **env(),
        ),
        alert(A, "a"),
        dp(A, "1", "detection", jd=2460000.5, band="r", mag=18.5, magerr=0.1),
        dp(A, "2", "upper_limit", jd=2459999.5, band="g", limmag=20.1),
        dp(A, "3", "forced", jd=2460000.6, band="r", flux=120.0, fluxerr=9.5),
        decide(A, "a", "SN", True),
        decide(A, "a", "SN", True, config="f2"),  # another filter variant: the same alert
        decide(A, "a", "AGN", False),
        alert("unreadable", "e", error="corrupt Avro container"),
        alert(B, "b"),
        dp(B, "4", "detection", jd=2460001.5, band="g", mag=19.0, magerr=0.2),
        dp(B, "1", "detection", jd=2460000.5, band="r", mag=18.5),  # shared with A
        decide(B, "b", "SN", False),
        alert(L, "l"),
        dp(L, "5", "detection", jd=2460002.5, band="i", mag=21.0, flux=3.2, fluxerr=0.3),
        dp(L, "7", "other", note="no time, no photometry", mag="n/a"),
        decide(L, "l", "AGN", True),
        StateCombined(**state, **at_a, provenance=prov("T1All"), **env()),
        failed("r", 1),
        alert(A, "c"),
        dp(A, "2", "upper_limit", jd=2459999.5, band="g", limmag=20.4),  # re-measured
        dp(A, "6", "detection", jd=2460003.5, band="r", mag=18.0, magerr=0.1),
        decide(A, "c", "SN", True),
        # the same combiner and configuration, its code changed without a version bump:
        StateCombined(**state, **at_c, provenance=prov("T1All", code="e"), **env()),
        failed("r", 2),
        ResultDerived(
            stream=A,
            result_id="r" * 32,
            subject="s" * 32,
            inputs=("q" * 32,),
            body={"peak_mag": 17.9},
            provenance=prov("T2Fit", duration_s=1.5),
            **env(),
        ),
        failed("x", 1),
        ReactionIntended(
            stream=f"reaction:{'k' * 32}",
            idempotency_key="k" * 32,
            target="http://hook",
            payload={"stock": A},
            stock=A,
            provenance=prov("T3Hook"),
            **env(),
        ),
        claim(1),
        react("failed", 1, "HTTP 503"),
        claim(2),
        react("delivered", 2),
        react("delivered", 1, key="z"),  # a report about no stock in particular
        dp(A, "2", "forced", jd=2459999.5, band="g", flux=1.0),  # re-measured again, new kind
        RunFinished(stream="run:run-1", run="run-1", status="ok", summary={"alerts": 4}, **env()),
    ]


@pytest.fixture
def readmodel(ledger: Ledger) -> Iterator[ReadModel]:
    """Return a created, empty read model in the ledger's database."""
    with ReadModel(readmodel_url(ledger.settings.ledger)) as rm:
        rm.create()
        yield rm


@pytest.fixture
def stored(ledger: Ledger) -> list[Event]:
    """Append the story to the ledger and return it as read back (with positions)."""
    ledger.append(story())
    return list(ledger.read())


def dump(rm: ReadModel) -> dict[str, list[tuple[Any, ...]]]:
    """Return every read-model table's rows, in key order."""
    out = {}
    with rm.engine.connect() as conn:
        for table in m.METADATA.sorted_tables:
            query = select(table).order_by(*table.primary_key.columns)
            out[table.name] = [tuple(row) for row in conn.execute(query)]
    return out


def test_catch_up_fills_every_table(ledger: Ledger, readmodel: ReadModel) -> None:
    events = ledger.append(story())
    assert readmodel.catch_up(ledger) == events.appended == 35
    assert readmodel.position() == ledger.head()
    view = stock_view(readmodel, A)
    assert view is not None
    s = view.stock
    assert (s.n_alerts, s.n_detections, s.n_upper_limits, s.n_forced) == (2, 2, 0, 2)
    times = [e.time for e in story() if e.stream == A]
    assert (s.first_time, s.last_time) == (min(times), max(times))
    assert s.channels == ("SN",)
    assert [(c.channel, c.accepted_alerts) for c in view.channels] == [("SN", 2)]
    assert [d.datapoint_id[0] for d in view.datapoints] == ["2", "1", "3", "6"]  # by jd
    remeasured = view.datapoints[0]
    assert (remeasured.kind, remeasured.flux, remeasured.limmag) == ("forced", 1.0, None)
    assert remeasured.superseded_count == 2
    assert (view.datapoints[1].mag, view.datapoints[1].band) == (18.5, "r")
    first, second = view.states  # one state id, made at two alerts by two code versions
    assert (first.channels, first.n_datapoints, first.unit) == (("SN",), 2, "T1All")
    assert first.state_id == second.state_id
    assert (first.bodies, second.bodies) == ("b" * 32, "c" * 32)
    ok, failed = view.results
    assert (ok.status, ok.body, ok.failures, ok.attempt, ok.inputs) == (
        "ok", {"peak_mag": 17.9}, 2, 2, ("q" * 32,),
    )  # fmt: skip
    assert (ok.error, ok.duration_s) == ("ValueError: attempt 2\nmore", 1.5)
    assert (failed.status, failed.body, failed.failures, failed.retry_after_s) == (
        "failed", None, 1, 30.0,
    )  # fmt: skip
    [reaction] = view.reactions
    assert (reaction.status, reaction.attempts, reaction.detail) == ("delivered", 2, "")
    assert reaction.payload == {"stock": A}  # from the intent
    assert len(view.journal) == 21
    assert view.journal[0].summary == "alert a00 (ztf-4.02) from a.avro#0"
    assert "failed (attempt 1): ValueError: attempt 1" in view.journal[8].summary
    assert view.journal[4].summary == "channel SN accepted into group 1 by F@1.0"
    assert view.journal[6].summary == "channel AGN rejected (code -3) by F@1.0: too faint"


def test_every_table_has_its_rows(ledger: Ledger, readmodel: ReadModel) -> None:
    ledger.append(story())
    readmodel.catch_up(ledger)
    rows = dump(readmodel)
    counts = {name: len(found) for name, found in rows.items()}
    assert counts == {
        "rm_alerts": 5, "rm_configs": 0, "rm_datapoints": 8, "rm_decisions": 6,
        "rm_journal": 29, "rm_reactions": 2, "rm_results": 2, "rm_run_counts": 11,
        "rm_run_datapoints": 4,
        "rm_runs": 1, "rm_state_channels": 1, "rm_states": 2, "rm_stock_channels": 2,
        "rm_stocks": 3, "rm_tracking": 1, "rm_channel_policies": 0, "rm_grants": 0,
        "rm_tokens": 0, "rm_ranks": 0, "rm_stock_programids": 0,
    }  # fmt: skip
    with readmodel.engine.connect() as conn:
        alerts = m.Alert.__table__
        bad = conn.execute(
            select(alerts.c.stock, alerts.c.error).where(alerts.c.error.is_not(None))
        )
        assert bad.all() == [("unreadable", "corrupt Avro container")]
    assert {r[0] for r in rows["rm_stocks"]} == {A, B, L}  # not the unreadable packet
    assert [r[1] for r in rows["rm_reactions"]] == [A, None]  # the stock of each reaction
    lsst = stock_view(readmodel, L)
    assert lsst is not None
    assert [(d.datapoint_id[0], d.jd, d.mag) for d in lsst.datapoints] == [
        ("5", 2460002.5, 21.0),
        ("7", None, None),  # no jd: last on both backends; a text "mag" is not a magnitude
    ]
    assert (lsst.stock.n_detections, lsst.stock.n_other, lsst.stock.channels) == (1, 1, ("AGN",))
    b = stock_view(readmodel, B)
    assert b is not None
    assert (b.stock.n_detections, b.stock.channels, b.channels) == (2, (), ())


def test_queries_list_and_summarise(ledger: Ledger, readmodel: ReadModel) -> None:
    ledger.append(story())
    readmodel.catch_up(ledger)

    def stocks(query: StockQuery | None = None, limit: int = 50) -> list[str]:
        found = list_stocks(readmodel, ledger, query or StockQuery(), limit=limit)
        return [s.stock for s in found.items]

    assert stocks() == [A, L, B]  # by last change, the latest first
    assert stocks(StockQuery(channel="AGN")) == [L]
    last_of_l = next(s.last_position for s in list_stocks(readmodel, ledger, StockQuery()).items
                     if s.stock == L)  # fmt: skip
    assert stocks(StockQuery(since=last_of_l)) == [A]
    assert stocks(limit=1) == [A]
    run = run_summary(readmodel, "run-1")
    assert run is not None
    assert (run.status, run.argv, run.summary, run.host) == (
        "ok",
        ("run", "job.yaml"),
        {"alerts": 4},
        "h",
    )
    assert (run.counts["DatapointAdded"], run.counts["RunFinished"]) == (10, 1)
    assert run.started is not None
    assert run.finished is not None
    assert run.started < run.finished
    assert run_summary(readmodel, "nope") is None
    assert stock_view(readmodel, "nope") is None
    with readmodel.engine.connect() as conn:  # an open connection works as well
        assert stock_view(conn, L) == stock_view(readmodel, L)
    with Session(readmodel.engine) as session:  # and so does a session
        assert run_summary(session, "run-1") == run_summary(readmodel, "run-1")


def test_drop_and_rebuild_give_identical_contents(ledger: Ledger, readmodel: ReadModel) -> None:
    ledger.append(one_of_each("run-0") + story())
    readmodel.catch_up(ledger)
    before = dump(readmodel)
    assert len(before["rm_configs"]) == 1
    assert readmodel.rebuild(ledger) == ledger.head()
    assert dump(readmodel) == before
    readmodel.drop()
    with readmodel.engine.connect() as conn:
        assert not any(conn.dialect.has_table(conn, t) for t in m.METADATA.tables)
        assert conn.dialect.has_table(conn, "skyledger_events")  # the ledger is left alone


def test_applying_a_batch_twice_changes_nothing(
    ledger: Ledger, readmodel: ReadModel, stored: list[Event]
) -> None:
    readmodel.apply(stored[:20])
    once = dump(readmodel)
    readmodel.apply(stored[:20])
    readmodel.apply(stored[5:10])
    assert dump(readmodel) == once
    readmodel.apply(stored[10:])  # overlaps: the first ten are skipped
    readmodel.apply(stored)
    assert readmodel.position() == stored[-1].position
    final = dump(readmodel)
    readmodel.rebuild(ledger)
    assert dump(readmodel) == final


@pytest.mark.parametrize("batch_size", [1, 4, 7])
def test_batches_of_any_size_end_identical(
    ledger: Ledger, readmodel: ReadModel, stored: list[Event], batch_size: int
) -> None:
    readmodel.apply(stored)
    in_one_go = dump(readmodel)
    readmodel.drop()
    readmodel.create()
    seen: list[tuple[int, int]] = []
    assert readmodel.catch_up(ledger, batch_size, lambda at, head: seen.append((at, head))) == 35
    assert dump(readmodel) == in_one_go
    assert seen[-1] == (ledger.head(), ledger.head())
    assert len(seen) == -(-35 // batch_size)


def test_killed_between_batches_ends_identical(
    ledger: Ledger, readmodel: ReadModel, stored: list[Event]
) -> None:
    readmodel.apply(stored)
    in_one_go = dump(readmodel)
    readmodel.drop()
    readmodel.create()
    readmodel.apply(stored[:13])
    readmodel.close()  # the process dies; another one opens the read model
    with ReadModel(readmodel_url(ledger.settings.ledger)) as again:
        assert again.position() == stored[12].position
        assert again.catch_up(ledger, batch_size=5) == 22
        assert dump(again) == in_one_go


def test_a_failing_batch_moves_neither_rows_nor_position(
    readmodel: ReadModel, stored: list[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    readmodel.apply(stored[:5])
    before = dump(readmodel)

    def boom(self: Fold, events: object) -> None:
        raise RuntimeError("crash mid-batch")

    monkeypatch.setattr(Fold, "results", boom)  # after journal, datapoints, decisions, ...
    with pytest.raises(RuntimeError, match="crash mid-batch"):
        readmodel.apply(stored)
    assert dump(readmodel) == before
    assert readmodel.position() == stored[4].position
    monkeypatch.undo()
    readmodel.apply(stored)
    with readmodel.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(m.JournalEntry)).scalar() == 29


def test_a_model_reset_under_a_catch_up_is_refused(
    ledger: Ledger, readmodel: ReadModel, stored: list[Event]
) -> None:
    def reset(position: int, head: int) -> None:  # another process rebuilds meanwhile
        with ReadModel(readmodel_url(ledger.settings.ledger)) as other:
            other.drop()
            other.create()

    with pytest.raises(TrackingConflict, match="found position 0"):
        readmodel.catch_up(ledger, batch_size=10, progress=reset)
    assert readmodel.position() == 0


def test_applying_needs_the_tracking_row(readmodel: ReadModel, stored: list[Event]) -> None:
    with readmodel.engine.begin() as conn:
        conn.execute(delete(m.Tracking))
    with pytest.raises(ProjectionError, match=r"call create\(\) first"):
        readmodel.apply(stored)
    readmodel.create()
    readmodel.apply(stored)
    assert readmodel.position() == stored[-1].position


def test_events_without_a_position_are_refused(readmodel: ReadModel) -> None:
    with pytest.raises(ProjectionError, match="no position"):
        readmodel.apply(story()[:3])
    assert readmodel.position() == 0


@pytest.mark.postgres
def test_a_ledger_in_a_schema_keeps_its_read_model_there(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA sky")
    url = f"{pg_url}?schema=sky"
    with Ledger.open(url) as ledger, ReadModel(readmodel_url(url)) as rm:
        ledger.append(one_of_each())
        rm.create()
        assert rm.catch_up(ledger) == len(one_of_each())
        with rm.engine.connect() as conn:
            found = conn.execute(
                select(func.count())
                .select_from(text("information_schema.tables"))
                .where(text("table_schema = 'sky' AND table_name LIKE 'rm_%'"))
            )
            assert found.scalar() == len(m.METADATA.tables)


def test_readmodel_url_names_the_ledger_database() -> None:
    assert readmodel_url("sqlite:///data/ledger.sqlite") == "sqlite:///data/ledger.sqlite"
    assert readmodel_url("postgresql://u:p@h:5433/db") == "postgresql+psycopg://u:p@h:5433/db"
    assert readmodel_url("postgres://h/db?schema=sky") == (
        "postgresql+psycopg://h/db?options=-csearch_path%3Dsky"
    )
    with pytest.raises(ConfigError, match="unknown store 'mysql'"):
        readmodel_url("mysql://h/db")


REAL = """
name: real
channels: [{name: MANY, filter: {unit: MinDetections, config: {n: 3}}, autocomplete: true}]
combiner: {unit: AllPoints}
t2: [{unit: CountPoints}, {unit: TotalFromCounts}]
"""


def test_kept_up_after_every_run_equals_rebuilt_on_real_alerts(
    ledger: Ledger, readmodel: ReadModel, tmp_path: Path
) -> None:
    """Real ZTF alerts in three runs, the read model caught up at each run's end, has
    the digest of one rebuilt from the ledger, here and in another database."""
    import tests.runners.pipeline_units  # noqa: F401  (registers the test units)

    files = sorted(SN.glob("*.avro")) + sorted(NIGHT.glob("*.avro"))
    for chunk in (files[:5], files[5:30], files[30:]):
        source = FileSource({"paths": [str(f) for f in chunk]})
        LocalRunner(parse_job(REAL), REAL, ledger, [source], read_model=True).run()
    readmodel.catch_up(ledger)  # the runs kept it up already: nothing left but their ends
    kept = readmodel.digest()
    assert len(dump(readmodel)["rm_states"]) > 50
    with ReadModel(f"sqlite:///{tmp_path}/elsewhere.sqlite") as other:
        other.create()
        other.catch_up(ledger)
        assert other.digest() == kept
    readmodel.rebuild(ledger)
    assert readmodel.digest() == kept
    ledger.append(story())  # a digest sees any change
    readmodel.catch_up(ledger)
    assert readmodel.digest() != kept


def test_a_run_whose_heartbeats_stopped_is_gone_with_when_it_was_last_seen(
    ledger: Ledger, readmodel: ReadModel
) -> None:
    def at(seconds: float) -> dt.datetime:
        return T0 + dt.timedelta(seconds=seconds)

    def started(run: str) -> RunStarted:
        return RunStarted(stream=f"run:{run}", run=run, job_hash="j", job_text="", packages={},
                          host="h", user="u", run_id=run, time=at(0))  # fmt: skip

    def beats(run: str, *seconds: float) -> list[Event]:
        return [RunHeartbeat(stream=f"run:{run}", run=run, beat=n, every_s=10.0, run_id=run,
                             time=at(s)) for n, s in enumerate(seconds, 1)]  # fmt: skip

    done = RunFinished(stream="run:done", run="done", status="ok", run_id="done", time=at(30))
    ledger.append([started("killed"), *beats("killed", 0, 10, 20)])
    ledger.append([started("alive"), *beats("alive", 0, 50)])
    ledger.append([started("done"), *beats("done", 0), done, started("local")])
    readmodel.catch_up(ledger)
    runs = {r.run_id: r for r in list_runs(readmodel, now=at(60))}
    assert {k: r.status for k, r in runs.items()} == {
        "killed": "gone", "alive": "running", "done": "ok", "local": "running"
    }  # fmt: skip
    assert (runs["killed"].last_seen, runs["killed"].heartbeat_s) == (at(20), 10.0)
    assert runs["local"].heartbeat_s is None  # sends none: it cannot be told gone
    assert list_runs(readmodel, now=at(50))[-1].status == "running"  # 30 s: not yet gone
    killed = run_summary(readmodel, "killed", now=at(60))
    assert killed is not None
    assert killed.status == "gone"
    console = Console(width=200, record=True)
    show_runs(console, list(runs.values()))
    assert "gone (last seen 2026-11-25 03:00:20)" in console.export_text()


def test_an_index_an_older_read_model_lacks_is_created_and_its_rows_stay(tmp_path: Path) -> None:
    from sqlalchemy import inspect

    with ReadModel(f"sqlite:///{tmp_path / 'rm.sqlite'}") as model:
        model.create()
        with model.engine.begin() as conn:
            conn.execute(text("DROP INDEX rm_ranks_top"))
            conn.execute(text("UPDATE rm_tracking SET position = 7"))
        model.create()
        with model.engine.connect() as conn:
            names = {i["name"] for i in inspect(conn).get_indexes("rm_ranks")}
        assert "rm_ranks_top" in names
        assert model.position() == 7


def test_a_read_model_without_a_table_of_ours_is_rebuilt(
    ledger: Ledger, readmodel: ReadModel
) -> None:
    ledger.append(story())
    readmodel.catch_up(ledger)
    digest = readmodel.digest()
    with readmodel.engine.begin() as conn:  # as an older skyledger left it
        m.StockProgramme.__table__.drop(conn)
    readmodel.create()
    assert readmodel.position() == 0  # dropped whole, to be folded again
    readmodel.catch_up(ledger)
    assert readmodel.digest() == digest
