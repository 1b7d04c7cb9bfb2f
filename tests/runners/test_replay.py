"""Replay as a variant, on real ZTF alerts: only what the job changes is computed, beside
what was (never in its place), equal to a run of the changed job from scratch (a new
configuration, filter, unit version or shaper); limits, delivery only when asked,
resuming after an interruption; and the diff of two variants."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from skyledger.ledger import (
    AlertReceived,
    ConfigError,
    DatapointAdded,
    DeliveryClaimed,
    Event,
    FilterDecided,
    Ledger,
    LedgerSettings,
    ReactionIntended,
    ReactionIssued,
    ReplayLimits,
    ResultDerived,
    RunStarted,
    StateCombined,
)
from skyledger.projections.diff import diff
from skyledger.projections.limits import Limits
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.runners.replay import ReplayRunner, side_of
from skyledger.units import T2View
from skyledger.units.sources import FileSource

NIGHT = Path(__file__).resolve().parents[2] / "examples" / "data" / "ztf" / "night"
RUN_EVENTS = ("RunStarted", "RunFinished", "ConfigurationRegistered")


def job(tmp_path: Path, min_rb: float = 0.5, amplitude: str = "[0.2, 1.0]") -> str:
    return f"""
name: replayed
channels:
  - name: TRANSIENTS
    filter: {{unit: ZtfFilter, config: {{min_rb: {min_rb}, min_ndet: 2}}}}
    autocomplete: true
  - name: BRIGHT
    filter: {{unit: ZtfFilter, config: {{min_rb: 0.3, min_ndet: 1}}}}
t2:
  - unit: T2LightCurveFeatures
  - unit: T2CandidateScore
    config: {{amplitude_mag: {amplitude}}}
t3:
  - unit: ReportReactor
    config: {{path: "{tmp_path / "report.html"}"}}
    select: {{channels: [TRANSIENTS]}}
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``skyledger`` script, as a user would."""
    script = shutil.which("skyledger", path=str(Path(sys.executable).parent))
    assert script
    return subprocess.run([script, *args], capture_output=True, text=True, timeout=300)


def run(ledger: Ledger, text: str) -> object:
    source = FileSource({"paths": [str(NIGHT)]})
    return LocalRunner(parse_job(text), text, ledger, [source], read_model=False).run()


def replay(ledger: Ledger, text: str, variant: str, **kw: object) -> object:
    return ReplayRunner(parse_job(text), text, ledger, variant, read_model=False, **kw).run()  # type: ignore[arg-type]


def facts(ledger: Ledger) -> set[str]:
    """Return the ids of every event but the runs' own records."""
    return {e.id for e in ledger.read() if type(e).__name__ not in RUN_EVENTS}


def of_type(ledger: Ledger, kind: type[Event]) -> list[Event]:
    return list(ledger.read(types=[kind]))


def results_by_unit(ledger: Ledger) -> Counter[tuple[str, str]]:
    return Counter(
        (e.provenance.unit, e.provenance.config)
        for e in of_type(ledger, ResultDerived)
        if isinstance(e, ResultDerived)
    )


@pytest.fixture
def hook_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("ledger_url", ["postgres"], indirect=True)
def test_a_changed_t2_configuration_is_computed_again_beside_the_old_results(
    ledger: Ledger, tmp_path: Path, hook_free: Path
) -> None:
    first = job(tmp_path)
    run(ledger, first)
    before = results_by_unit(ledger)
    decisions, states = len(of_type(ledger, FilterDecided)), len(of_type(ledger, StateCombined))
    intents, issued = len(of_type(ledger, ReactionIntended)), len(of_type(ledger, ReactionIssued))

    second = job(tmp_path, amplitude="[0.5, 1.5]")
    summary = replay(ledger, second, "v2")
    after = results_by_unit(ledger)
    score = [k for k in after if k[0] == "T2CandidateScore"]
    features = [k for k in after if k[0] == "T2LightCurveFeatures"]
    assert len(score) == 2  # a new configuration beside the old
    assert len(features) == 1
    assert all(after[k] == before[k] for k in before)  # nothing replaced
    new_score = next(k for k in score if k not in before)
    assert after[new_score] == before[next(k for k in before if k[0] == "T2CandidateScore")]
    assert summary.results["T2LightCurveFeatures"] == {"reused": after[features[0]]}  # type: ignore[attr-defined]
    assert summary.results["T2CandidateScore"] == {"ok": after[new_score]}  # type: ignore[attr-defined]
    # Filters and combiner unchanged: no decision or state is made again.
    assert len(of_type(ledger, FilterDecided)) == decisions
    assert len(of_type(ledger, StateCombined)) == states
    # The reactions are recorded, not delivered.
    assert len(of_type(ledger, ReactionIntended)) > intents
    assert len(of_type(ledger, ReactionIssued)) == issued
    started = [e for e in of_type(ledger, RunStarted) if isinstance(e, RunStarted)]
    assert [e.variant for e in started] == [None, "v2"]

    # The variant equals a run of the changed job over the same alerts from scratch.
    with Ledger.open(LedgerSettings.load(ledger=str(tmp_path / "fresh.db"))) as fresh:
        run(fresh, second)
        delivered = {e.id for e in fresh.read(types=[DeliveryClaimed, ReactionIssued])}
        assert delivered  # the run delivered its reactions; the replay did not
        assert facts(fresh) - delivered <= facts(ledger)
        assert {k for k in results_by_unit(fresh)} == {new_score, *features}

    # Again: nothing new but the run's own records; with --deliver, the intents go out.
    held = facts(ledger)
    replay(ledger, second, "v2")
    assert facts(ledger) == held
    replay(ledger, second, "v2", deliver=True)
    assert len(of_type(ledger, ReactionIssued)) > issued


def test_a_new_filter_decides_every_alert_ever_received_rejected_ones_included(
    tmp_path: Path, hook_free: Path
) -> None:
    with Ledger.open(LedgerSettings.load(ledger=str(tmp_path / "l.db"))) as ledger:
        run(ledger, job(tmp_path, min_rb=0.99))  # strict: TRANSIENTS accepts almost nothing
        alerts = [e for e in of_type(ledger, AlertReceived) if isinstance(e, AlertReceived)]
        readable = {a.id for a in alerts if a.error is None}
        strict = {
            e.stream for e in of_type(ledger, FilterDecided)
            if isinstance(e, FilterDecided) and e.accepted and e.channel == "TRANSIENTS"
        }  # fmt: skip
        replay(ledger, job(tmp_path, min_rb=0.3), "lax")
        lax = [e for e in of_type(ledger, FilterDecided) if isinstance(e, FilterDecided)
               and e.channel == "TRANSIENTS" and e.provenance.config != ""]  # fmt: skip
        by_config = Counter(e.provenance.config for e in lax)
        assert sorted(by_config.values()) == [len(readable), len(readable)]
        accepted = {e.stream for e in lax if e.accepted}
        assert len(accepted) > len(strict)
        url = ledger.url
    unnamed = cli("diff", "replayed", "lax", "--ledger", url, "--json")
    assert unnamed.returncode == 2  # the first run recorded no variant name: give its file
    assert "no such variant, run or job file" in json.loads(unnamed.stdout)["error"]
    result = cli("diff", str(_write(tmp_path, job(tmp_path, min_rb=0.99))), "lax", "--ledger",
                 url, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    moved = found["channels"]["TRANSIENTS"]
    assert sorted(moved["only_b"]) == sorted(accepted - strict)
    assert moved["only_a"] == []
    score = found["entries"]["T2CandidateScore"]  # BRIGHT follows them all either way
    assert score["added"] + score["removed"] == 0
    assert score["same"] + score["changed"] == found["stocks"]


class Interrupt:
    """A progress callback that stops the run (as Ctrl-C would) at a stage's third call."""

    def __init__(self, stage: str | None) -> None:
        self.stage = stage
        self.calls: Counter[str] = Counter()

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        self.calls[stage] += 1
        if stage == self.stage and self.calls[stage] == 3:
            raise KeyboardInterrupt


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_an_interrupted_replay_resumes_and_ends_as_one_that_was_not(
    tmp_path: Path, hook_free: Path
) -> None:
    second = job(tmp_path, amplitude="[0.5, 1.5]")
    ends = []
    for name, stop_in in (("whole", None), ("stopped", "T2 augment")):
        with Ledger.open(LedgerSettings.load(ledger=str(tmp_path / f"{name}.db"))) as ledger:
            run(ledger, job(tmp_path))
            progress = Interrupt(stop_in)

            runner = ReplayRunner(parse_job(second), second, ledger, "v2", progress=progress,
                                  read_model=False, batch_size=10)  # fmt: skip
            if stop_in is None:
                runner.run()
            else:
                with pytest.raises(KeyboardInterrupt):
                    runner.run()
                states = len(of_type(ledger, StateCombined))
                partial = results_by_unit(ledger)
                scored = sum(n for (u, _), n in partial.items() if u == "T2CandidateScore")
                assert states < scored < 2 * states  # stopped half-way through T2
                ReplayRunner(parse_job(second), second, ledger, "v2", read_model=False).run()
            ends.append(facts(ledger))
    assert ends[0] == ends[1]


def test_limits_replay_only_their_alerts_under_positions_of_their_own(
    tmp_path: Path, hook_free: Path
) -> None:
    with Ledger.open(LedgerSettings.load(ledger=str(tmp_path / "l.db"))) as ledger:
        run(ledger, job(tmp_path))
        states = [e for e in of_type(ledger, StateCombined) if isinstance(e, StateCombined)]
        stock = Counter(s.stream for s in states).most_common(1)[0][0]
        second = job(tmp_path, amplitude="[0.5, 1.5]")
        replay(ledger, second, "v2", limits=Limits(stocks=frozenset({stock})))
        new = [e for e in of_type(ledger, ResultDerived) if isinstance(e, ResultDerived)
               and e.provenance.unit == "T2CandidateScore"][sum(1 for _ in states):]  # fmt: skip
        assert new
        assert {e.stream for e in new} == {stock}
        # Up to a position: only states of alerts at or before it.
        middle = sorted(s.alert_position or 0 for s in states)[len(states) // 2]
        replay(ledger, second, "v2", limits=Limits(until=middle))
        limited = [e for e in of_type(ledger, ResultDerived) if isinstance(e, ResultDerived)
                   and e.provenance.unit == "T2CandidateScore"][len(states):]  # fmt: skip
        by_state = {s.state_id: s for s in states}
        assert all((by_state[e.subject].alert_position or 0) <= middle or e.stream == stock
                   for e in limited)  # fmt: skip
        # Without limits, the rest; the limited positions never stood for it.
        replay(ledger, second, "v2")
        every = [e for e in of_type(ledger, ResultDerived) if isinstance(e, ResultDerived)
                 and e.provenance.unit == "T2CandidateScore"]  # fmt: skip
        assert len(every) == 2 * len(states)


def test_a_variant_name_names_one_job_and_diff_names_what_is_missing(
    tmp_path: Path, hook_free: Path
) -> None:
    url = str(tmp_path / "l.db")
    with Ledger.open(LedgerSettings.load(ledger=url)) as ledger:
        run(ledger, job(tmp_path))
        replay(ledger, job(tmp_path, amplitude="[0.5, 1.5]"), "v2")
        with pytest.raises(ConfigError, match="already the name of another job"):
            replay(ledger, job(tmp_path, amplitude="[0.4, 1.5]"), "v2")
        with pytest.raises(ConfigError, match=r"no such variant, run or job file .*v2"):
            side_of(ledger, "v3")
    path = _write(tmp_path, job(tmp_path))
    same = cli("diff", str(path), str(path), "--ledger", url)
    assert same.returncode == 0
    assert "no differences" in same.stdout
    shown = cli("diff", str(path), "v2", "--ledger", url, "--limit", "2")
    assert shown.returncode == 0, shown.stderr
    assert "T2CandidateScore: " in shown.stdout
    assert "components.amplitude" in shown.stdout
    bad = cli("replay", str(path), "--variant", "v 2", "--ledger", url)
    assert bad.returncode == 2
    assert "--variant 'v 2'" in bad.stderr
    bad = cli("replay", str(path), "--variant", "v4", "--since", "soon", "--ledger", url)
    assert bad.returncode == 2
    assert "--since: 'soon' is neither a position nor a time" in bad.stderr


def test_a_diff_of_a_limited_replay_compares_only_what_its_limits_cover(
    tmp_path: Path, hook_free: Path
) -> None:
    url = str(tmp_path / "l.db")
    second = job(tmp_path, amplitude="[0.5, 1.5]")
    with Ledger.open(LedgerSettings.load(ledger=url)) as ledger:
        run(ledger, job(tmp_path))
        states = [e for e in of_type(ledger, StateCombined) if isinstance(e, StateCombined)]
        two = sorted(s for s, _ in Counter(s.stream for s in states).most_common(2))
        replay(ledger, second, "two", limits=Limits(stocks=frozenset(two)))
        middle = sorted(s.alert_position or 0 for s in states)[len(states) // 2]
        replay(ledger, second, "early", limits=Limits(until=middle))
        # A stricter BRIGHT, but only TRANSIENTS replayed: BRIGHT never decided.
        stricter = job(tmp_path).replace("min_rb: 0.3, min_ndet: 1", "min_rb: 0.9, min_ndet: 1")
        ReplayRunner(parse_job(stricter), stricter, ledger, "transients", read_model=False,
                     channels=["TRANSIENTS"]).run()  # fmt: skip
        started = {e.variant: e.limits for e in of_type(ledger, RunStarted)
                   if isinstance(e, RunStarted)}  # fmt: skip
    assert started[None] is None
    assert started["two"] == ReplayLimits(stocks=tuple(two))
    assert started["transients"] == ReplayLimits(channels=("TRANSIENTS",))
    base = str(_write(tmp_path, job(tmp_path)))

    found = json.loads(cli("diff", base, "two", "--ledger", url, "--json").stdout)
    assert found["stocks"] == 2
    assert found["compared"] == {"limited_by": ["two"], "empty": False, "since": None,
                                 "until": None, "stocks": two, "channels": None}  # fmt: skip
    for counts in found["entries"].values():  # no "removed" for the stocks left out
        assert (counts["added"], counts["removed"]) == (0, 0)
        assert counts["changed"] + counts["same"] == 2
    assert found["entries"]["T2CandidateScore"]["changed"] >= 1
    assert {c["stock"] for c in found["changes"]} <= set(two)
    assert all(m == {"only_a": [], "only_b": []} for m in found["channels"].values())
    shown = cli("diff", base, "two", "--ledger", url)
    assert f"compared 2 stocks: the limit of two (--stock {two[0]}, {two[1]})" in shown.stdout

    found = json.loads(cli("diff", "early", base, "--ledger", url, "--json").stdout)
    assert (found["compared"]["until"], found["compared"]["stocks"]) == (middle, None)
    assert found["stocks"] > 2
    for counts in found["entries"].values():  # each stock at its latest state up to middle
        assert (counts["added"], counts["removed"]) == (0, 0)
    assert found["entries"]["T2CandidateScore"]["changed"] > 0
    # Both limited: what both cover (the two stocks, up to middle).
    found = json.loads(cli("diff", "two", "early", "--ledger", url, "--json").stdout)
    assert found["compared"]["limited_by"] == ["two", "early"]
    assert set(found["compared"]["stocks"]) <= set(two)
    assert found["stocks"] == len(found["compared"]["stocks"])
    assert all(c["added"] + c["removed"] + c["changed"] == 0 for c in found["entries"].values())

    found = json.loads(cli("diff", base, "transients", "--ledger", url, "--json").stdout)
    assert list(found["channels"]) == ["TRANSIENTS"]  # not BRIGHT, which it did not go over
    assert found["compared"]["channels"] == ["TRANSIENTS"]
    assert found["channels"]["TRANSIENTS"] == {"only_a": [], "only_b": []}
    assert all(c["removed"] == 0 for c in found["entries"].values())


VERSIONED = """
name: versioned
channels:
  - name: ALL
combiner: {unit: AllPoints}
t2:
  - unit: CountPoints
  - unit: TotalFromCounts
  - unit: BandPoints
"""


def test_a_new_unit_version_recomputes_exactly_its_results_and_those_that_depend_on_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.runners.pipeline_units import CountPoints

    def counted_twice(self: CountPoints, view: T2View) -> dict[str, int]:
        assert view.lightcurve is not None
        return {b: 2 * len(view.lightcurve.band(b)[0]) for b in view.lightcurve.bands()}

    path = _write(tmp_path, VERSIONED)
    with Ledger.open(LedgerSettings.load(ledger=str(tmp_path / "l.db"))) as ledger:
        run(ledger, VERSIONED)
        before = results_by_unit(ledger)
        with monkeypatch.context() as patched:  # version 2 counts each detection twice
            patched.setattr(CountPoints, "version", "2")
            patched.setattr(CountPoints, "process", counted_twice)
            summary = replay(ledger, VERSIONED, "counts-v2")
        after = results_by_unit(ledger)
        states = before[next(k for k in before if k[0] == "BandPoints")]
        assert summary.results == {  # type: ignore[attr-defined]
            "CountPoints": {"ok": states},  # the new version, on every state
            "TotalFromCounts": {"ok": states},  # its input changed: computed again
            "BandPoints": {"reused": states},  # untouched
        }
        new = after - before
        assert sorted(new) == sorted(k for k in before if k[0] != "BandPoints")
        versions = Counter(
            e.provenance.unit_version for e in of_type(ledger, ResultDerived)
            if isinstance(e, ResultDerived) and e.provenance.unit == "CountPoints"
        )  # fmt: skip
        assert versions == {"1": states, "2": states}  # side by side
        # The diff compares the variant as it ran (version 2) with the job as installed.
        old, _ = side_of(ledger, str(path))
        ran, notes = side_of(ledger, "counts-v2")
        assert notes == [
            "counts-v2: t2:CountPoints (CountPoints) ran as version 2, code "
            f"{CountPoints.digest()[:12]}; compared as it ran (installed: version 1, code "
            f"{CountPoints.digest()[:12]})"
        ]
        found = diff(ledger, old, ran)
    assert found.entries["BandPoints"]["changed"] == 0
    for entry in ("CountPoints", "TotalFromCounts"):
        assert found.entries[entry]["changed"] == found.stocks  # every stock's value doubled
    total = next(c for c in found.changes if c.entry == "TotalFromCounts")
    assert total.values["total"]["delta"] == total.values["total"]["a"]


SHAPED = """
name: shaped
channels:
  - name: ALL
combiner: {unit: AllPoints}
t2:
  - unit: CountAll
"""
DETECTIONS_ONLY = SHAPED + "shapers: {ztf: {unit: ZtfDetectionsOnly}}\n"


def states_of(ledger: Ledger, tagged: bool) -> list[StateCombined]:
    return [
        e for e in of_type(ledger, StateCombined)
        if isinstance(e, StateCombined) and (e.shaper is not None) == tagged
    ]  # fmt: skip


def counted(ledger: Ledger, states: list[StateCombined]) -> dict[tuple[str | None, str], Any]:
    """Return CountAll's result at each state, by (alert, state id)."""
    by_rid = {e.subject: e.body for e in of_type(ledger, ResultDerived)
              if isinstance(e, ResultDerived) and e.provenance.unit == "CountAll"}  # fmt: skip
    return {(s.alert, s.state_id): by_rid[s.state_id] for s in states}


def test_a_new_shaper_shapes_every_stored_packet_again_into_a_variant_of_its_own(
    tmp_path: Path,
) -> None:
    import tests.runners.pipeline_units  # noqa: F401  (ZtfDetectionsOnly, CountAll)

    with Ledger.open(LedgerSettings.load(ledger=str(tmp_path / "l.db"))) as ledger:
        run(ledger, SHAPED)
        ingest_states = states_of(ledger, tagged=False)
        before = counted(ledger, ingest_states)
        summary = replay(ledger, DETECTIONS_ONLY, "detections")
        readable = [e for e in of_type(ledger, AlertReceived)
                    if isinstance(e, AlertReceived) and e.error is None]  # fmt: skip
        reshaped = summary.replay["reshaped"]  # type: ignore[attr-defined]
        assert reshaped["alerts"] == len(readable)
        assert reshaped["failed"] == 0
        variant = states_of(ledger, tagged=True)
        assert len(variant) == len(ingest_states)  # a state per alert, as before
        # The variant's datapoints are its shaper's: detections only, never ingest's.
        kinds = {e.id: (e.kind, e.shaper) for e in of_type(ledger, DatapointAdded)
                 if isinstance(e, DatapointAdded)}  # fmt: skip
        for state in variant:
            causes = [kinds[c] for c in state.causation if c in kinds]
            assert causes
            assert {kind for kind, _ in causes} == {"detection"}
            assert {tag for _, tag in causes} == {state.shaper}
        # Ingest's states and results are untouched, and a run of the first job again
        # adds nothing: it never sees the variant's datapoints.
        held = facts(ledger)
        run(ledger, SHAPED)
        assert facts(ledger) == held
        assert counted(ledger, states_of(ledger, tagged=False)) == before
        replayed = counted(ledger, variant)

    # The variant equals a run of the detections-only job from scratch: the same states
    # at the same alerts, the same results.
    with Ledger.open(LedgerSettings.load(ledger=str(tmp_path / "fresh.db"))) as fresh:
        run(fresh, DETECTIONS_ONLY)
        assert counted(fresh, states_of(fresh, tagged=False)) == replayed
    assert replayed != before  # upper limits counted before, not now


def test_a_diff_as_of_a_position_is_the_diff_taken_there(tmp_path: Path) -> None:
    import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
    from skyledger.projections.diff import diff
    from skyledger.runners.replay import side_of

    sn = sorted((Path(__file__).resolve().parents[1] / "data" / "ztf" / "ZTF21abiuvdk")
                .glob("*.avro"))  # fmt: skip
    text = (
        "name: d\nchannels: [{name: A, filter: {unit: MinDetections, config: {n: 1}}}]\n"
        "combiner: {unit: AllPoints}\nt2: [{unit: BandPoints, config: {band: r}}]\n"
    )
    other = text.replace("band: r", "band: g")
    with Ledger.open(LedgerSettings.load(ledger=str(tmp_path / "l.db"))) as ledger:
        source = FileSource({"paths": [str(f) for f in sn[:10]]})
        base = LocalRunner(parse_job(text), text, ledger, [source], read_model=False).run()
        replay(ledger, other, "g")
        then = diff(ledger, side_of(ledger, base.run_id)[0], side_of(ledger, "g")[0])
        position = ledger.head()
        later = FileSource({"paths": [str(f) for f in sn[10:]]})  # the run's stock moves on
        LocalRunner(parse_job(text), text, ledger, [later], read_model=False).run()
        now = diff(ledger, side_of(ledger, base.run_id)[0], side_of(ledger, "g")[0])
        again = diff(ledger, side_of(ledger, base.run_id)[0], side_of(ledger, "g")[0],
                     until=position)  # fmt: skip
    assert then.as_dict() == again.as_dict()
    assert now.as_dict() != then.as_dict()  # the later alerts changed what is compared
