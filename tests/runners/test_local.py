"""The local runner end to end on real ZTF alerts, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import fastavro
import pytest

import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
from skyledger.ledger import (
    AlertReceived,
    ConfigError,
    DatapointAdded,
    FilterDecided,
    Ledger,
    ReactionIssued,
    ResultDerived,
    ResultFailed,
    RunFinished,
    RunStarted,
    StateCombined,
)
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.units.sources import FileSource

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data" / "ztf"


def job_text(tmp_path: Path) -> str:
    return f"""
name: pipeline-test
channels:
  - name: MANY
    filter: {{unit: MinDetections, config: {{n: 3}}}}
    autocomplete: true
  - name: ALL
combiner: {{unit: AllPoints}}
t2:
  - unit: CountPoints
  - unit: TotalFromCounts
  - unit: AlwaysFails
t3:
  - unit: CollectReactor
    config: {{path: "{tmp_path / "collected.txt"}"}}
    select: {{channels: [MANY]}}
retry: {{max_attempts: 2, backoff_s: 0.0}}
"""


def run_once(ledger: Ledger, tmp_path: Path, paths: list[Path]) -> object:
    text = job_text(tmp_path)
    source = FileSource({"paths": [str(p) for p in paths]})
    return LocalRunner(parse_job(text), text, ledger, [source]).run()


def expected_counts(folder: Path) -> tuple[int, Counter[str]]:
    """Count alerts and detections per stock straight from the Avro files."""
    alerts, detections = 0, Counter()
    for path in sorted(folder.rglob("*.avro")):
        with path.open("rb") as fh:
            for record in fastavro.reader(fh):
                alerts += 1
                candids = {record["candidate"]["candid"]}
                candids |= {p["candid"] for p in record["prv_candidates"] or [] if p["candid"]}
                detections[record["objectId"]] += 0  # stock seen
                detections[f"{record['objectId']}:all"] += len(candids)
    return alerts, detections


def test_a_run_records_every_tier(ledger: Ledger, tmp_path: Path) -> None:
    folder = EXAMPLES / "ZTF21abiuvdk"
    run_once(ledger, tmp_path, [folder])
    alerts, _ = expected_counts(folder)
    events = list(ledger.read())
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["AlertReceived"] == alerts == 34
    assert kinds["RunStarted"] == kinds["RunFinished"] == 1
    # Every alert gets a decision from each channel.
    assert kinds["FilterDecided"] == 2 * alerts
    # A state per alert (ALL follows every alert), each with its results.
    states = [e for e in events if isinstance(e, StateCombined)]
    assert len(states) == 34
    results = [e for e in events if isinstance(e, ResultDerived)]
    assert Counter(r.provenance.unit for r in results) == {"CountPoints": 34, "TotalFromCounts": 34}
    last = states[-1]
    counts = next(r.body for r in results if r.subject == last.state_id
                  and r.provenance.unit == "CountPoints")  # fmt: skip
    total = next(r.body for r in results if r.subject == last.state_id
                 and r.provenance.unit == "TotalFromCounts")  # fmt: skip
    assert total == {"total": sum(counts.values())}
    detections = {
        e.datapoint_id for e in events if isinstance(e, DatapointAdded) and e.kind == "detection"
    }
    assert sum(counts.values()) == len(detections)
    # The failing unit: recorded with its traceback, retried once, then given up, per state.
    failures = [e for e in events if isinstance(e, ResultFailed)]
    assert Counter(f.attempt for f in failures) == {1: 34, 2: 34}
    assert "ValueError: cannot handle ZTF21abiuvdk" in failures[0].error
    assert "Traceback" in failures[0].traceback
    assert all(f.retry_after_s is None for f in failures if f.attempt == 2)
    assert {f.causation for f in failures} == {(s.id,) for s in states}  # failure -> state
    # T3: one reaction (the same key at every state), intended once, delivered once.
    assert (tmp_path / "collected.txt").read_text() == "ZTF21abiuvdk\n"
    assert kinds["ReactionIntended"] == kinds["DeliveryClaimed"] == 1
    reactions = [e for e in events if isinstance(e, ReactionIssued)]
    assert [r.outcome for r in reactions] == ["delivered"]
    finished = next(e for e in events if isinstance(e, RunFinished))
    assert finished.status == "failed units"  # AlwaysFails gave up
    assert finished.summary["alerts"] == {"read": 34, "new": 34, "already_in_ledger": 0}
    assert {f["unit"] for f in finished.summary["failures"]} == {"AlwaysFails"}


def test_a_second_run_appends_no_new_facts(ledger: Ledger, tmp_path: Path) -> None:
    folder = EXAMPLES / "ZTF21abiuvdk"
    run_once(ledger, tmp_path, [folder])
    first = {e.id for e in ledger.read()}
    run_once(ledger, tmp_path, [folder])
    new = [e for e in ledger.read() if e.id not in first]
    assert Counter(type(e).__name__ for e in new) == {"RunStarted": 1, "RunFinished": 1}
    assert (tmp_path / "collected.txt").read_text() == "ZTF21abiuvdk\n"  # not delivered twice


def test_the_light_curve_grows_alert_by_alert(ledger: Ledger, tmp_path: Path) -> None:
    files = sorted((EXAMPLES / "ZTF21abiuvdk").glob("*.avro"))
    totals = []
    for path in files[:6]:
        run_once(ledger, tmp_path, [path])
        results = [
            e for e in ledger.read(types=[ResultDerived])
            if isinstance(e, ResultDerived) and e.provenance.unit == "TotalFromCounts"
        ]  # fmt: skip
        totals.append(results[-1].body["total"] if results else 0)
    assert totals == sorted(totals)
    assert totals[-1] > totals[0]
    states = list(ledger.read(types=[StateCombined]))
    assert len({s.state_id for s in states if isinstance(s, StateCombined)}) >= 2


def test_filters_decide_channels_not_facts(ledger: Ledger, tmp_path: Path) -> None:
    night = next((EXAMPLES / "night").glob("*.avro"))
    run_once(ledger, tmp_path, [night])
    events = list(ledger.read())
    decisions = [e for e in events if isinstance(e, FilterDecided) and e.channel == "MANY"]
    rejected = {e.stream for e in decisions if not e.accepted}
    assert rejected, "some night alerts have fewer than 3 detections"
    with_points = {e.stream for e in events if isinstance(e, DatapointAdded)}
    assert rejected <= with_points  # rejected stocks still have their datapoints recorded
    assert all(e.code == -10 for e in decisions if not e.accepted)


def test_unreadable_packets_are_recorded_and_the_run_goes_on(
    ledger: Ledger, tmp_path: Path, shared_data: Path
) -> None:
    malformed = shared_data / "ztf" / "malformed"
    run_once(ledger, tmp_path, [malformed, EXAMPLES / "ZTF21abiuvdk"])
    events = list(ledger.read(types=[AlertReceived]))
    bad = [e for e in events if isinstance(e, AlertReceived) and e.error]
    assert len(bad) == len(list(malformed.iterdir())) == 5
    assert all("sync marker" in (e.error or "") for e in bad)
    assert all(ledger.packet(e.digest) is not None for e in bad)  # bytes kept for a replay
    assert sum(1 for e in events if isinstance(e, AlertReceived) and not e.error) == 34


def test_a_missing_source_is_refused_before_anything_is_recorded(
    ledger: Ledger, tmp_path: Path
) -> None:
    missing = EXAMPLES / "ZTF21abiuvdk" / "missing.avro"
    with pytest.raises(ConfigError, match=rf"source 0 \(FileSource\): paths: {missing}: no such"):
        run_once(ledger, tmp_path, [EXAMPLES / "night", missing])
    text = job_text(tmp_path)
    with pytest.raises(ConfigError, match="no source: give --source PATH"):
        LocalRunner(parse_job(text), text, ledger, []).run()
    assert ledger.head() == 0


def test_run_started_records_the_job_and_the_software(ledger: Ledger, tmp_path: Path) -> None:
    first = sorted((EXAMPLES / "ZTF21abiuvdk").glob("*.avro"))[0]
    run_once(ledger, tmp_path, [first])
    started = next(e for e in ledger.read(types=[RunStarted]))
    assert isinstance(started, RunStarted)
    assert started.job_hash == parse_job(job_text(tmp_path)).hash
    assert "channels:" in started.job_text
    assert "skyledger" in started.packages
    assert "fastavro" in started.packages


def test_jobs_sharing_a_ledger_work_only_for_their_own_channels(
    ledger: Ledger, tmp_path: Path
) -> None:
    folder = EXAMPLES / "ZTF21abiuvdk"
    run_once(ledger, tmp_path, [folder])  # its channels follow ZTF21abiuvdk
    picky = """
name: picky
channels: [{name: NOBODY, filter: {unit: MinDetections, config: {n: 1000}}}]
combiner: {unit: AllPoints}
t2: [{unit: CountPoints}]
"""
    summary = LocalRunner(
        parse_job(picky), picky, ledger, [FileSource({"paths": [str(folder)]})]
    ).run()
    assert summary.decisions["NOBODY"]["accepted"] == 0  # it decided on the 34 alerts
    assert sum(r["count"] for r in summary.decisions["NOBODY"]["rejected"].values()) == 34
    assert summary.states == {"alerts": 0, "new": 0, "made_before": 0}  # it follows none
    assert summary.results == {}  # the other job's states (same combiner) are not its work


def test_a_new_unit_version_is_computed_on_data_already_processed(
    ledger: Ledger, tmp_path: Path
) -> None:
    from tests.runners.pipeline_units import CountPoints

    folder = EXAMPLES / "ZTF21abiuvdk"
    run_once(ledger, tmp_path, [folder])
    old = {e.result_id for e in ledger.read(types=[ResultDerived]) if isinstance(e, ResultDerived)}
    CountPoints.version = "2"
    try:
        summary = run_once(ledger, tmp_path, [folder])
    finally:
        CountPoints.version = "1"
    results = [e for e in ledger.read(types=[ResultDerived]) if isinstance(e, ResultDerived)]
    new = [r for r in results if r.result_id not in old]
    # CountPoints@2 is a new variant beside @1, and its dependent is recomputed on it.
    assert Counter(r.provenance.unit for r in new) == {"CountPoints": 34, "TotalFromCounts": 34}
    assert {r.provenance.unit_version for r in results if r.provenance.unit == "CountPoints"} == {
        "1",
        "2",
    }
    assert summary.results["CountPoints"]["ok"] == 34  # type: ignore[attr-defined]


def test_worker_processes_record_what_one_process_records(
    ledger: Ledger, tmp_path: Path, shared_data: Path
) -> None:
    """T0 in two worker processes (decode, shape, filter, encode) appends the same events,
    in the same order, as T0 in this process; later tiers then agree too."""
    paths = [EXAMPLES, shared_data / "ztf" / "malformed"]
    text = job_text(tmp_path)
    source = FileSource({"paths": [str(p) for p in paths]})
    with Ledger.open(f"sqlite:///{tmp_path}/alone.sqlite") as alone:
        one = LocalRunner(parse_job(text), text, alone, [source], read_model=False).run()
        expected = [(type(e).__name__, e.id) for e in alone.read()]
    (tmp_path / "collected.txt").unlink()
    two = LocalRunner(parse_job(text), text, ledger, [source], read_model=False, workers=2).run()
    found = [(type(e).__name__, e.id) for e in ledger.read()]
    per_run = {"RunStarted", "RunFinished"}
    assert [f for f in found if f[0] not in per_run] == [e for e in expected if e[0] not in per_run]
    read = one.alerts["read"] + one.unreadable["read"]  # type: ignore[operator]
    assert Counter(name for name, _ in found)["AlertReceived"] == read
    for field in ("alerts", "unreadable", "sources", "datapoints", "decisions", "stocks",
                  "states", "results", "reactions"):  # fmt: skip
        assert getattr(two, field) == getattr(one, field), field
    packets = [e for e in ledger.read(types=[AlertReceived]) if isinstance(e, AlertReceived)]
    assert all(ledger.packet(p.digest) for p in packets if p.error is None)
