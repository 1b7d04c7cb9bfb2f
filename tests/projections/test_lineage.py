"""Lineage (``skyledger why``) on real ZTF alerts: from a delivered reaction, a result, a
state, a datapoint or an alert down to the packets, each event once, with what made it,
the configurations in full and the runs that recorded it; and the ids users meet resolve
to their events."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
from skyledger.ledger import (
    AlertReceived,
    DatapointAdded,
    Event,
    Ledger,
    ReactionIssued,
    ResultDerived,
    StateCombined,
    digest_bytes,
)
from skyledger.projections.lineage import Lineage, Step, lineage, resolve
from skyledger.projections.queries import event_ids_of
from skyledger.projections.readmodel import ReadModel, readmodel_url
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.units.sources import FileSource

ROOT = Path(__file__).resolve().parents[2]
SN = ROOT / "examples" / "data" / "ztf" / "ZTF21abiuvdk"

JOB = """
name: lineage
channels: [{name: MANY, filter: {unit: MinDetections, config: {n: 3}}, autocomplete: true}]
combiner: {unit: AllPoints}
t2: [{unit: CountPoints}, {unit: TotalFromCounts}]
t3: [{unit: CollectReactor, config: {path: "OUT"}}]
"""


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """Return a SQLite ledger file after a local run of JOB over one supernova's alerts."""
    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    text = JOB.replace("OUT", str(tmp_path / "out.txt"))
    with Ledger.open(url) as ledger:
        source = FileSource({"paths": [str(SN)]})
        LocalRunner(parse_job(text), text, ledger, [source], read_model=False).run()
    return tmp_path / "ledger.sqlite"


def steps(step: Step) -> list[Step]:
    """Return every step of a tree, depth first."""
    found, stack = [], [step]
    while stack:
        s = stack.pop()
        found.append(s)
        stack.extend(s.causes)
    return found


def of(ledger: Ledger, cls: type[Event]) -> list:  # type: ignore[type-arg]
    return [e for e in ledger.read(types=[cls]) if isinstance(e, cls)]


def test_a_delivered_reaction_goes_down_to_the_packet_bytes(filled: Path) -> None:
    with Ledger.open(f"sqlite:///{filled}") as ledger:
        [outcome] = of(ledger, ReactionIssued)
        found = lineage(ledger, outcome)
        alerts = of(ledger, AlertReceived)
        packets = {a.digest: ledger.packet(a.digest) for a in alerts}
    tree = steps(found.root)
    expanded = [s for s in tree if not s.shown_above]
    assert len({s.id for s in expanded}) == len(expanded) == found.steps  # each event once
    kinds = Counter(s.type for s in expanded)
    assert {"ReactionIssued", "DeliveryClaimed", "ReactionIntended", "StateCombined",
            "ResultDerived", "FilterDecided", "DatapointAdded", "AlertReceived",
            "RunStarted"} <= set(kinds)  # fmt: skip
    assert not [s for s in tree if s.missing]
    # The reaction was made at the first state with three detections: its alert, and
    # the earlier alerts that brought the state's datapoints.
    [state] = [s for s in expanded if s.type == "StateCombined"]
    reached = {s.id for s in expanded if s.type == "AlertReceived"}
    assert state.fields["alert"] in reached
    assert len(reached) == len(found.packets) == 3
    for digest, kept in found.packets.items():
        packet = packets[digest]
        assert packet is not None
        assert digest_bytes(packet) == digest
        assert kept.size == len(packet)
    # Each derived step names what made it; the configurations are given in full.
    for s in expanded:
        if s.type in {"StateCombined", "ResultDerived", "FilterDecided", "ReactionIntended"}:
            assert s.made_by is not None, s
            assert s.made_by.code_digest
            assert s.made_by.unit in found.configs[s.made_by.config].units
    assert found.configs
    assert any(c.config == {"n": 3} for c in found.configs.values())
    [run] = found.runs.values()
    assert run.found
    assert run.status == "failed units" or run.status == "ok"
    assert "name: lineage" in run.job_text
    assert run.job_hash
    assert run.host
    assert "pydantic" in {k.lower() for k in run.packages}
    assert json.loads(found.model_dump_json())["root"]["type"] == "ReactionIssued"


def test_the_ids_users_meet_resolve_to_their_events(filled: Path) -> None:
    url = f"sqlite:///{filled}"
    with Ledger.open(url) as ledger:
        result = of(ledger, ResultDerived)[-1]
        [outcome] = of(ledger, ReactionIssued)
        alert = of(ledger, AlertReceived)[0]
        state = of(ledger, StateCombined)[-1]
        point = of(ledger, DatapointAdded)[0]
        model = ReadModel(readmodel_url(ledger.settings.ledger))
        model.create()
        model.catch_up(ledger)
        with model:

            def lookup(ident: str) -> list[str]:
                return event_ids_of(model, ident)

            assert resolve(ledger, result.id)[0].id == result.id
            assert resolve(ledger, result.result_id)[0].id == result.id
            assert resolve(ledger, outcome.idempotency_key)[0].id == outcome.id  # the outcome
            assert resolve(ledger, alert.digest)[0].id == alert.id
            assert resolve(ledger, state.state_id) == []  # only the read model knows it
            assert [e.id for e in resolve(ledger, state.state_id, lookup)] == [state.id]
            [latest] = resolve(ledger, point.datapoint_id, lookup)  # its body of today
            assert isinstance(latest, DatapointAdded)
            assert latest.datapoint_id == point.datapoint_id
            assert resolve(ledger, alert.alert_id or "", lookup)[0].id == alert.id
            assert resolve(ledger, "0" * 32, lookup) == []
        # A state's lineage: its alert, the decision that made the channel follow it,
        # and the datapoints it holds, each down to the alert that added it.
        found: Lineage = lineage(ledger, state)
    causes = Counter(s.type for s in found.root.causes)
    assert causes["AlertReceived"] == 1
    assert causes["FilterDecided"] >= 1
    assert causes["DatapointAdded"] == len(state.datapoint_ids)


def skyledger(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = shutil.which("skyledger", path=str(Path(sys.executable).parent))
    assert script
    return subprocess.run([script, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_why_prints_the_tree_and_json(filled: Path) -> None:
    url = f"sqlite:///{filled}"
    with Ledger.open(url) as ledger:
        result = of(ledger, ResultDerived)[-1]
    done = skyledger("why", result.result_id, "--ledger", url, cwd=filled.parent)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "ResultDerived" in text
    assert "AlertReceived" in text
    assert "by TotalFromCounts@" in text or "by CountPoints@" in text
    assert "(shown above)" in text  # datapoints reached again through later states
    assert "name: lineage" in text  # the job's text, with its run
    as_json = skyledger("why", result.result_id, "--ledger", url, "--json", cwd=filled.parent)
    found = Lineage.model_validate_json(as_json.stdout)
    assert found.root.id == result.id
    missing = skyledger("why", "nothing-like-this", "--ledger", url, cwd=filled.parent)
    assert missing.returncode == 2
    assert "nothing in" in missing.stderr
    assert "has the id 'nothing-like-this'" in missing.stderr
