"""The tiers as projectors, on real ZTF alerts and both backends: a state per alert,
variants that never mix, code changes that are never silently reused, sources resumed
where a run stopped, and lineage from a reaction down to the packet bytes."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from skyledger.ledger import (
    AlertReceived,
    ConfigurationRegistered,
    DatapointAdded,
    Event,
    FilterDecided,
    Ledger,
    ReactionIntended,
    ReactionIssued,
    ResultDerived,
    ResultFailed,
    RunFinished,
    RunStarted,
    StateCombined,
    digest_bytes,
)
from skyledger.projections.projector import catch_up
from skyledger.projections.t0 import Ingest
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner, RunSummary
from skyledger.runners.tiers import JobUnits, build_tiers, register_configs
from skyledger.units import Alert, load_unit
from skyledger.units.sources import FileSource, iter_packets
from tests.runners.pipeline_units import retrying_job  # (and registers the test units)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data" / "ztf"
SN = EXAMPLES / "ZTF21abiuvdk"


def run(ledger: Ledger, text: str, paths: Sequence[Path], **options: object) -> RunSummary:
    source = FileSource({"paths": [str(p) for p in paths]})
    return LocalRunner(parse_job(text), text, ledger, [source], read_model=False,
                       **options).run()  # type: ignore[arg-type]  # fmt: skip


def of(ledger: Ledger, cls: type[Event]) -> list:  # type: ignore[type-arg]
    return [e for e in ledger.read(types=[cls]) if isinstance(e, cls)]


ALL = """
name: all
channels: [{name: ALL}]
combiner: {unit: LightCurveCombiner}
"""


def test_a_state_per_alert_holding_what_the_ledger_knew_then(ledger: Ledger) -> None:
    files = sorted(SN.glob("*.avro"))
    run(ledger, ALL, [SN])
    states = of(ledger, StateCombined)
    assert len(states) == len(files) == 34
    # The k-th state holds the datapoints of the first k alerts, never a later one's.
    shaper = load_unit("ZtfShaper")()
    known: set[str] = set()
    alerts = {a.id: a for a in of(ledger, AlertReceived)}
    by_alert = {s.alert: s for s in states}
    for path in files:
        [packet] = [p for p in iter_packets([path]) if isinstance(p, Alert)]
        known |= {d.id for d in shaper.shape(packet)}  # type: ignore[attr-defined]
        [alert] = [a for a in alerts.values() if a.digest == packet.digest]
        state = by_alert[alert.id]
        assert set(state.datapoint_ids) == known, path.name
        assert state.alert_position == alert.position
        # Its causation: the alert, the decision that made a channel follow it, and the
        # events that added the datapoint bodies it holds.
        assert state.causation[0] == alert.id
        found = ledger.get_many(state.causation)
        decisions = [e for e in found.values() if isinstance(e, FilterDecided)]
        assert [(d.channel, d.alert) for d in decisions] == [("ALL", alert.id)]
        points = [e for e in found.values() if isinstance(e, DatapointAdded)]
        assert {p.datapoint_id for p in points} == known
        assert all((p.position or 0) < (state.position or 0) for p in points)


def test_one_run_and_thirty_four_runs_make_the_same_states(ledger_url: str, tmp_path: Path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path}/one.sqlite") as one:
        run(one, ALL, [SN])
        expected = {s.id for s in of(one, StateCombined)}
    with Ledger.open(ledger_url) as many:
        for path in sorted(SN.glob("*.avro")):
            run(many, ALL, [path])
        assert {s.id for s in of(many, StateCombined)} == expected
        assert len(expected) == 34


def job_for(band: str, kinds: str, report: Path) -> str:
    return f"""
name: band-{band}
channels: [{{name: SN}}]
combiner: {{unit: LightCurveCombiner, config: {{kinds: {kinds}}}}}
t2:
  - {{unit: BandPoints, name: counts, config: {{band: {band}}}}}
t3:
  - unit: ReportReactor
    config: {{path: "{report}", rank_by: counts.n, features_unit: counts, limit: 4}}
"""


def test_two_jobs_on_one_ledger_rank_only_their_own_values(ledger: Ledger, tmp_path: Path) -> None:
    red = job_for("r", "[detection]", tmp_path / "r.html")
    green = job_for("g", "[detection, upper_limit]", tmp_path / "g.html")
    run(ledger, red, [EXAMPLES])
    run(ledger, green, [EXAMPLES])
    per_band: dict[str, dict[str, set[tuple[float, int]]]] = {}
    for dp in of(ledger, DatapointAdded):
        if dp.kind == "detection" and dp.body.get("mag") is not None:
            bands = per_band.setdefault(dp.stream, {})  # one detection per exposure
            bands.setdefault(dp.body["band"], set()).add((dp.body["jd"], dp.body["rcid"]))
    reports = {i.target: i for i in of(ledger, ReactionIntended)}
    assert set(reports) == {str(tmp_path / "r.html"), str(tmp_path / "g.html")}
    for band in ("r", "g"):
        entries = reports[str(tmp_path / f"{band}.html")].payload["stocks"]
        assert entries, band
        for entry in entries:
            counts = entry["results"]["counts"]
            assert counts["band"] == band  # never the other job's variant
            assert entry["value"] == counts["n"] == len(per_band[entry["stock"]].get(band, ()))
    # Each job's T2 worked on its own combiner's states only.
    combiner = load_unit("LightCurveCombiner")
    config = {
        "r": combiner({"kinds": ["detection"]}).config_hash,
        "g": combiner({"kinds": ["detection", "upper_limit"]}).config_hash,
    }
    states = {s.id: s for s in of(ledger, StateCombined)}
    assert {s.provenance.config for s in states.values()} == set(config.values())
    for result in of(ledger, ResultDerived):
        state = states[result.causation[0]]
        assert state.provenance.config == config[result.body["band"]]


def test_one_unit_under_two_names_with_its_dependency_named(ledger: Ledger) -> None:
    text = """
name: twice
channels: [{name: ALL}]
combiner: {unit: AllPoints}
t2:
  - {unit: BandPoints, name: red, config: {band: r}}
  - {unit: BandPoints, name: green, config: {band: g}}
  - {unit: PlusOne, depends: {BandPoints: green}}
"""
    summary = run(ledger, text, [SN])
    assert summary.results == {
        "red": {"ok": 34}, "green": {"ok": 34}, "PlusOne": {"ok": 34},
    }  # fmt: skip
    results = of(ledger, ResultDerived)
    by_id = {r.result_id: r for r in results}
    for plus in (r for r in results if r.provenance.unit == "PlusOne"):
        [green] = [by_id[i] for i in plus.inputs]
        assert green.body["band"] == "g"
        assert plus.body["n"] == green.body["n"] + 1


def test_a_code_change_without_a_new_version_is_computed_again(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.runners.pipeline_units import CountPoints

    text = ALL.replace("LightCurveCombiner", "AllPoints") + "t2: [{unit: CountPoints}]\n"
    first = run(ledger, text, [SN])
    assert first.changed_units == []
    before = {r.result_id for r in of(ledger, ResultDerived)}
    monkeypatch.setattr(CountPoints, "digest", classmethod(lambda cls: "e" * 32))
    second = run(ledger, text, [SN])
    assert [u["unit"] for u in second.changed_units] == ["CountPoints"]
    assert second.results == {"CountPoints": {"ok": 34}}  # not reused: computed again
    after = of(ledger, ResultDerived)
    assert len(after) == 68
    assert {r.provenance.unit_digest for r in after if r.result_id not in before} == {"e" * 32}


def test_an_interrupted_run_resumes_where_its_last_batch_ended(
    ledger_url: str, tmp_path: Path
) -> None:
    text = ALL.replace("LightCurveCombiner", "AllPoints") + "t2: [{unit: CountPoints}]\n"
    with Ledger.open(f"sqlite:///{tmp_path}/whole.sqlite") as whole:
        run(whole, text, [SN])
        expected = facts(whole.read())

    def stop_at_packet(stage: str, done: int, total: int | None) -> None:
        if stage == "T0 ingest" and done == 20:
            raise KeyboardInterrupt

    with Ledger.open(ledger_url) as ledger:
        with pytest.raises(KeyboardInterrupt):
            run(ledger, text, [SN], progress=stop_at_packet, batch_size=40)
        [finished] = of(ledger, RunFinished)
        assert finished.status == "interrupted"
        read = len(of(ledger, AlertReceived))
        assert 0 < read < 20  # the batches handed over before the interruption
        again = run(ledger, text, [SN], batch_size=40)
        [source] = again.sources
        assert source["source"].endswith("ZTF21abiuvdk")
        # After the last whole file stored; the rest read now.
        assert source["resumed_after"] == {"item": read, "record": 0}
        assert source["read"] == again.alerts["read"] == 34 - read
        assert facts(ledger.read()) == expected


def facts(events: Iterable[Event]) -> set[str]:
    return {
        e.id for e in events
        if not isinstance(e, RunStarted | RunFinished)
        and not (isinstance(e, ConfigurationRegistered) and e.unit == "FileSource")
    }  # fmt: skip


def test_lineage_runs_from_a_reaction_down_to_the_packet_bytes(
    ledger: Ledger, tmp_path: Path
) -> None:
    text = f"""
name: lineage
channels: [{{name: MANY, filter: {{unit: MinDetections, config: {{n: 3}}}}, autocomplete: true}}]
combiner: {{unit: AllPoints}}
t2: [{{unit: CountPoints}}, {{unit: TotalFromCounts}}, {{unit: AlwaysFails}}]
t3: [{{unit: CollectReactor, config: {{path: "{tmp_path / "out.txt"}"}}}}]
retry: {{max_attempts: 1}}
"""
    run(ledger, text, [SN, EXAMPLES / "night"])
    outcomes = of(ledger, ReactionIssued)
    assert outcomes
    seen: dict[str, Event] = {}
    frontier = [o.id for o in outcomes]
    while frontier:
        found = ledger.get_many(frontier)
        assert set(found) == set(frontier), "every cause named is in the ledger"
        seen.update(found)
        frontier = sorted({c for e in found.values() for c in e.causation} - set(seen))
    kinds = Counter(type(e).__name__ for e in seen.values())
    chain = {"DeliveryClaimed", "ReactionIntended", "StateCombined", "ResultDerived",
             "FilterDecided", "DatapointAdded", "AlertReceived", "RunStarted"}  # fmt: skip
    assert chain <= set(kinds)
    alerts = [e for e in seen.values() if isinstance(e, AlertReceived)]
    for alert in alerts:  # every alert behind the reaction: its bytes, and the run
        packet = ledger.packet(alert.digest)
        assert packet is not None
        assert digest_bytes(packet) == alert.digest
        assert [type(seen[c]) for c in alert.causation] == [RunStarted]
    assert "ZTF21abiuvdk" in {a.stream for a in alerts}
    for failure in of(ledger, ResultFailed):  # a failed result names its state
        assert [type(e) for e in ledger.get_many(failure.causation).values()] == [StateCombined]


def test_a_selection_reactor_sees_the_stocks_updated_since_its_last_pass(
    ledger: Ledger, tmp_path: Path
) -> None:
    out = tmp_path / "collected.txt"
    text = f"""
name: selection
channels:
  - {{name: MANY, filter: {{unit: MinDetections, config: {{n: 8}}}}, autocomplete: true}}
  - {{name: ALL}}
combiner: {{unit: AllPoints}}
t3:
  - unit: CollectSelection
    config: {{path: "{out}"}}
    select: {{channels: [MANY]}}
"""
    files = sorted(SN.glob("*.avro"))
    night = [p for p in iter_packets([EXAMPLES / "night"]) if isinstance(p, Alert)]

    def detections(alert: Alert) -> int:
        return 1 + sum(1 for p in alert.payload.get("prv_candidates") or [] if p.get("candid"))

    rich = [a for a in night if detections(a) >= 8][:2]
    assert len(rich) == 2
    for alert in rich:
        (tmp_path / f"{alert.stock}.avro").write_bytes(alert.packet)

    def selected(summary: RunSummary) -> int:
        [reactor] = summary.reactions
        return int(reactor.get("selected", 0))

    assert selected(run(ledger, text, files[:5])) == 0  # too few detections yet
    assert selected(run(ledger, text, files[5:10])) == 1  # now followed by MANY
    assert selected(run(ledger, text, [tmp_path / f"{a.stock}.avro" for a in rich])) == 2
    # Followed since an earlier run and updated now: selected (its reaction has the same
    # key as before, stocks being all this reactor's payload: it is not delivered again).
    assert selected(run(ledger, text, files[10:11])) == 1
    assert selected(run(ledger, text, [])) == 0  # nothing new
    picked = sorted(a.stock for a in rich)
    assert out.read_text().splitlines() == ["ZTF21abiuvdk", " ".join(picked)]
    every = text.replace("channels: [MANY]}", "channels: [MANY], updated_since_last_run: false}")
    run(ledger, every, [])
    assert out.read_text().splitlines()[-1] == " ".join(sorted(["ZTF21abiuvdk", *picked]))


def test_a_deferred_retry_records_the_attempts_a_waiting_one_records(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Live T2 puts a failing state off until its retry is due (the worker hands its
    notification back with that delay) instead of sleeping: the position stops before
    the state, later states go on, and the attempts recorded are those of a local run
    that sleeps between them."""
    night = EXAMPLES / "night"
    alerts = Counter(p.stock for p in iter_packets([night]) if isinstance(p, Alert))
    [(failing_stock, _)] = alerts.most_common(1)  # a stock with two alerts
    text = retrying_job(failing_stock, max_attempts=3, backoff_s=30)
    waits: list[float] = []
    with Ledger.open(f"sqlite:///{tmp_path}/local.sqlite") as local:
        run(local, text, [night], sleep=waits.append)
        expected = facts(local.read())
    assert sorted(set(waits)) == [30.0, 60.0]

    job = parse_job(text)
    source = FileSource({"paths": [str(night)]})
    units = JobUnits(job, [source])
    register_configs(ledger, units.all(), "live")
    tiers = build_tiers(units, ledger, "live", defer=True)
    now = [time.time()]
    tiers.augment.clock = lambda: now[0]
    Ingest(ledger, units.shapers, units.filters, "live", {}).run(source, "packets")
    for projector in (tiers.decide, tiers.combine) * 3:  # past their own output
        catch_up(ledger, projector)
    states = of(ledger, StateCombined)
    failing = [s for s in states if s.stream == failing_stock]
    assert 1 < len(failing) < len(states)

    done = catch_up(ledger, tiers.augment)
    assert done.deferred_s == 30.0
    assert done.end == failing[0].position - 1  # held just before the failing state
    tried = [f for f in of(ledger, ResultFailed) if f.stream == failing_stock]
    assert [f.attempt for f in tried] == [1] * len(failing)  # each state tried once
    made = Counter(r.provenance.unit for r in of(ledger, ResultDerived))
    assert made["CountPoints"] == len(states)  # the later states went on
    dependents = [r for r in of(ledger, ResultDerived) if r.provenance.unit == "TotalFromCounts"]
    assert len(dependents) == len(states) - len(failing)

    now[0] += 10  # not due yet: no attempt, the rest of the wait
    again = catch_up(ledger, tiers.augment)
    assert again.deferred_s == pytest.approx(20.0)
    assert again.end == done.end
    assert len(of(ledger, ResultFailed)) == len(failing)

    rounds = 0
    while True:  # let time pass as asked until nothing is put off any more
        done = catch_up(ledger, tiers.augment)
        if done.deferred_s is None:
            break
        now[0] += done.deferred_s
        rounds += 1
    assert rounds == 2  # the rest of the first wait, then the second (the states side by side)
    assert Counter(f.attempt for f in of(ledger, ResultFailed)) == dict.fromkeys(
        (1, 2, 3), len(failing)
    )
    assert facts(ledger.read()) == expected
