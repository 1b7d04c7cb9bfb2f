"""The whole pipeline over every real data folder: counts per stock, checked against
values computed here straight from the Avro packets with fastavro."""

from __future__ import annotations

import gzip
import io
from collections import Counter, defaultdict
from pathlib import Path

import fastavro
import pytest

from skyledger.ledger import AlertReceived, DatapointAdded, Ledger, ResultDerived, StateCombined
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.units.sources import FileSource

JOB = """
name: everything
channels: [{name: ALL}]
t2: [{unit: T2LightCurveFeatures, config: {bazin: false}}]
"""


def records(folder: Path) -> list[dict]:
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        try:
            found += list(fastavro.reader(io.BytesIO(data)))
        except Exception:
            continue
    return found


def expected_ztf(folder: Path) -> dict[str, Counter[str]]:
    """Per objectId: alerts, distinct detections (by candid), distinct upper limits."""
    per: dict[str, Counter[str]] = defaultdict(Counter)
    candids: dict[str, set[int]] = defaultdict(set)
    limits: dict[str, set[tuple[float, int]]] = defaultdict(set)
    for rec in records(folder):
        stock = rec["objectId"]
        per[stock]["alerts"] += 1
        candids[stock].add(rec["candidate"]["candid"])
        for prv in rec.get("prv_candidates") or []:
            if prv.get("candid") is not None:
                if prv.get("forcediffimflux") is None:
                    candids[stock].add(prv["candid"])
            elif prv.get("forcediffimflux") is None:
                limits[stock].add((prv["jd"], prv["fid"]))
    for stock in per:
        per[stock]["detection"] = len(candids[stock])
        per[stock]["upper_limit"] = len(limits[stock])
    return per


def run(ledger: Ledger, folder: Path) -> list:
    source = FileSource({"paths": [str(folder)]})
    LocalRunner(parse_job(JOB), JOB, ledger, [source]).run()
    return list(ledger.read())


def observed(events: list) -> dict[str, Counter[str]]:
    per: dict[str, Counter[str]] = defaultdict(Counter)
    seen: dict[str, set[str]] = defaultdict(set)
    contents: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for e in events:
        if isinstance(e, AlertReceived) and not e.error:
            per[e.stream]["alerts"] += 1
        elif isinstance(e, DatapointAdded) and e.datapoint_id not in seen[e.stream]:
            seen[e.stream].add(e.datapoint_id)
            per[e.stream][e.kind] += 1
        elif isinstance(e, StateCombined):
            per[e.stream]["states"] += 1
            contents[e.stream].add((e.state_id, e.bodies))
            per[e.stream]["distinct states"] = len(contents[e.stream])
        elif isinstance(e, ResultDerived):
            per[e.stream]["results"] += 1
    return per


@pytest.mark.parametrize("folder", ["ZTF21abiuvdk", "samples", "night"])
def test_ztf_counts_per_stock(tmp_path: Path, shared_data: Path, folder: str) -> None:
    path = shared_data / "ztf" / folder
    with Ledger.open(f"sqlite:///{tmp_path}/l.sqlite") as ledger:
        got = observed(run(ledger, path))
    want = expected_ztf(path)
    assert set(got) == set(want)
    for stock, counts in want.items():
        assert got[stock]["alerts"] == counts["alerts"], stock
        assert got[stock]["detection"] == counts["detection"], stock
        assert got[stock]["upper_limit"] == counts["upper_limit"], stock
        # Every alert is followed (one channel, no filter): a state at each alert, and a
        # result for each distinct state (one made again at a later alert is reused).
        assert got[stock]["states"] == counts["alerts"], stock
        assert got[stock]["results"] == got[stock]["distinct states"], stock


def test_ztf_suspect_history_is_kept_as_it_came(tmp_path: Path, shared_data: Path) -> None:
    # Valid by the schema, wrong in content: recorded faithfully, nothing dropped.
    path = shared_data / "ztf" / "suspect"
    with Ledger.open(f"sqlite:///{tmp_path}/l.sqlite") as ledger:
        got = observed(run(ledger, path))
    want = expected_ztf(path)
    assert sum(c["alerts"] for c in got.values()) == sum(c["alerts"] for c in want.values())
    assert {s: c["detection"] for s, c in got.items()} == {
        s: c["detection"] for s, c in want.items()
    }


@pytest.mark.parametrize(("folder", "prefix"), [("lsst/real", "lsst"), ("elasticc", "elasticc")])
def test_lsst_and_elasticc_counts_per_stock(
    tmp_path: Path, shared_data: Path, folder: str, prefix: str
) -> None:
    path = shared_data / folder
    with Ledger.open(f"sqlite:///{tmp_path}/l.sqlite") as ledger:
        got = observed(run(ledger, path))
    recs = records(path)
    want: dict[str, Counter[str]] = defaultdict(Counter)
    sources: dict[str, set[int]] = defaultdict(set)
    for rec in recs:
        obj = rec.get("diaObject") or {}
        object_id = obj.get("diaObjectId") or rec["diaSource"].get("diaObjectId")
        ss = rec["diaSource"].get("ssObjectId")
        stock = f"{prefix}:{object_id}" if object_id else f"{prefix}-ss:{ss}"
        want[stock]["alerts"] += 1
        sources[stock].add(rec["diaSource"]["diaSourceId"])
        for prv in rec.get("prvDiaSources") or []:
            sources[stock].add(prv["diaSourceId"])
    assert set(got) == set(want)
    for stock in want:
        assert got[stock]["alerts"] == want[stock]["alerts"], stock
        assert got[stock]["detection"] == len(sources[stock]), stock
        assert got[stock]["states"] == want[stock]["alerts"], stock
