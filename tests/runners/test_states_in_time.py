"""States in time, on the real night: the night's 699 ZTF alerts run once in file order
and once in time order (by the candidate's jd) give the same state at every alert, but
for the alerts named here, each of which lacks in one order a datapoint observed before
it that reached the ledger only after it; the read model marks exactly those states
(``late``), and ``skyledger stock`` shows the mark. No state holds anything observed
after its alert, nor two detections of one exposure."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from skyledger.ledger import AlertReceived, DatapointAdded, Ledger, StateCombined
from skyledger.projections.queries import stock_view
from skyledger.projections.readmodel import ReadModel
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.runners.show import show_stock
from skyledger.units import Alert
from skyledger.units.sources import FileSource

JOB = """
name: order
channels: [{name: ALL}]
"""

# (objectId, candid) -> datapoints its state lacks, in file order and in time order: each
# observed before the alert, and carried only by packets received after it in that order.
DIFFERENT = {
    ("ZTF18aavyrwh", "1786239164515015011"): (14, 0),
    ("ZTF18aavyrwh", "1786119423215010007"): (0, 21),
    ("ZTF18abtqapc", "1786301730115015001"): (1, 0),
    ("ZTF18abwvktq", "1786152820715015022"): (2, 0),
    ("ZTF18abtvhfz", "1786149520315010010"): (1, 0),
}
# Late in both orders alike (the datapoints came only with later-observed alerts), so
# both states are the same.
LATE_ALIKE = {
    ("ZTF18acurdfi", "2481537851115010000"): (1, 1),
    ("ZTF19aanyfkh", "1786183863215010002"): (16, 16),
}


class Night:
    """The states of one ordering: per alert (objectId, candid), the state's event and
    its read-model row."""

    def __init__(self, ledger: Ledger, model: ReadModel) -> None:
        events = list(ledger.read())
        alerts = {e.id: e for e in events if isinstance(e, AlertReceived)}
        self.bodies = {e.datapoint_id: e.body for e in events if isinstance(e, DatapointAdded)}
        self.states = {
            (e.stream, str(alerts[e.alert].alert_id)): e
            for e in events
            if isinstance(e, StateCombined) and e.alert
        }
        self.views = {s: stock_view(model, s) for s in {k[0] for k in self.states}}
        self.late = {
            key: next(r.late for r in self.views[key[0]].states if r.event_id == e.id)  # type: ignore[union-attr]
            for key, e in self.states.items()
        }


def run(tmp: Path, name: str, packets: list[Alert]) -> Night:
    folder = tmp / name
    folder.mkdir()
    for i, alert in enumerate(packets):  # one file per packet, read in name order
        (folder / f"{i:04d}.avro").write_bytes(alert.packet)
    url = f"sqlite:///{tmp}/{name}.sqlite"
    model = ReadModel(url)
    model.create()
    with Ledger.open(url) as ledger:
        LocalRunner(parse_job(JOB), JOB, ledger, [FileSource({"paths": [str(folder)]})]).run()
        model.catch_up(ledger)
        return Night(ledger, model)


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Night]:
    found = FileSource({"paths": [str(shared_data / "ztf" / "night")]}).packets()
    packets = [a for a in found if isinstance(a, Alert)]
    assert len(packets) == 699
    # sorted() is stable: alerts observed at the same time keep their file order
    by_time = sorted(packets, key=lambda a: a.payload["candidate"]["jd"])
    assert by_time != packets
    tmp = tmp_path_factory.mktemp("night")
    return {"file": run(tmp, "file", packets), "time": run(tmp, "time", by_time)}


def test_file_and_time_order_give_the_same_states_but_at_late_alerts(
    nights: dict[str, Night],
) -> None:
    file, time = nights["file"], nights["time"]
    assert set(file.states) == set(time.states)
    assert len(file.states) == 699  # a state at every alert
    different = {k for k in file.states if file.states[k].state_id != time.states[k].state_id}
    assert different == set(DIFFERENT)
    late = {k: (file.late[k], time.late[k]) for k in file.states if file.late[k] or time.late[k]}
    assert late == DIFFERENT | LATE_ALIKE


@pytest.mark.parametrize("order", ["file", "time"])
def test_no_state_holds_the_future_or_an_exposure_twice(
    nights: dict[str, Night], order: str
) -> None:
    night = nights[order]
    for (stock, candid), state in night.states.items():
        bodies = [night.bodies[i] for i in state.datapoint_ids]
        observed = next(b["jd"] for b in night.bodies.values() if str(b.get("candid")) == candid)
        assert state.until == observed, (stock, candid)
        assert max(b["jd"] for b in bodies) <= observed, (stock, candid)
        exposures = Counter((b["jd"], b["rcid"]) for b in bodies if b.get("candid"))
        assert max(exposures.values()) == 1, (stock, candid)


def test_one_detection_per_exposure_keeps_the_highest_candid(nights: dict[str, Night]) -> None:
    # ZTF issued four candidates of ZTF18abckozp from one exposure (jd 2459537.8261574,
    # readout channel 49); its latest alert carries all four in its history.
    night = nights["file"]
    state = max((s for k, s in night.states.items() if k[0] == "ZTF18abckozp"),
                key=lambda s: s.until or 0)  # fmt: skip
    held = {night.bodies[i].get("candid") for i in state.datapoint_ids}
    siblings = {1783326154915015009, 1783326154915015010, 1783326154915015011,
                1783326154915015012}  # fmt: skip
    assert held & siblings == {1783326154915015012}
    assert state.set_aside
    assert state.set_aside["same_exposure"] >= 3


def test_stock_marks_the_late_states(nights: dict[str, Night]) -> None:
    view = nights["file"].views["ZTF18aavyrwh"]
    assert view is not None
    out = Console(width=200, record=True)
    show_stock(out, view)
    text = out.export_text()
    assert "LATE: 14" in text
    assert "same exposure" in text
    assert "1 states marked LATE lack datapoints observed before their alert" in text
