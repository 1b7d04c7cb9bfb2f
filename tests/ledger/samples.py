"""One event of each type, with fixed content: used by tests and for release fixtures.

The fixture of a release is written by ``python -m tests.ledger.samples VERSION``.
"""

from __future__ import annotations

import datetime as dt

from skyledger.ledger import bodies_id
from skyledger.ledger.events import (
    AlertReceived,
    ConfigurationRegistered,
    DatapointAdded,
    DeliveryClaimed,
    Event,
    FilterDecided,
    Provenance,
    ReactionIntended,
    ReactionIssued,
    ResultDerived,
    ResultFailed,
    RunFinished,
    RunStarted,
    StateCombined,
    UnitUse,
)

T = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
PROV = Provenance(
    unit="T2LightCurveFeatures", unit_version="1.0", unit_digest="d" * 32, config="c" * 32,
    duration_s=0.012,
)  # fmt: skip


def one_of_each(run_id: str = "run-1") -> list[Event]:
    """Return one event of every type, linked by causation like a real run's."""
    env = {"time": T, "run_id": run_id}
    alert = AlertReceived(
        stream="ZTF21abiuvdk", digest="a" * 32, source="examples/data", locator="x.avro#0",
        alert_id="1642404680815015001", schema_name="ztf-3.3", **env,
    )  # fmt: skip
    dp = DatapointAdded(
        stream="ZTF21abiuvdk", datapoint_id="1" * 32, kind="detection",
        body={"jd": 2459396.7165625, "mag": 18.1, "band": "r"}, causation=(alert.id,), **env,
    )  # fmt: skip
    decision = FilterDecided(
        stream="ZTF21abiuvdk", channel="SN", alert_digest=alert.digest, alert=alert.id,
        alert_position=3, accepted=True, group=1, provenance=PROV, causation=(alert.id,), **env,
    )  # fmt: skip
    state = StateCombined(
        stream="ZTF21abiuvdk", state_id="5" * 32, datapoint_ids=(dp.datapoint_id,),
        bodies=bodies_id([dp.id]), alert=alert.id, alert_position=3, provenance=PROV,
        causation=(alert.id, decision.id, dp.id), **env,
    )  # fmt: skip
    result = ResultDerived(
        stream="ZTF21abiuvdk", result_id="7" * 32, subject=state.state_id,
        body={"peak_mag": 17.9}, provenance=PROV, causation=(state.id,), **env,
    )  # fmt: skip
    intent = ReactionIntended(
        stream="reaction:" + "k" * 32, idempotency_key="k" * 32, target="http://127.0.0.1/hook",
        payload={"stock": "ZTF21abiuvdk"}, stock="ZTF21abiuvdk",
        intended_by="t3:0123456789abcdef", provenance=PROV, causation=(state.id, result.id),
        **env,
    )  # fmt: skip
    claim = DeliveryClaimed(
        stream=intent.stream, idempotency_key=intent.idempotency_key, attempt=1,
        provenance=PROV, causation=(intent.id,), **env,
    )  # fmt: skip
    return [
        RunStarted(
            stream=f"run:{run_id}", run=run_id, job_hash="j" * 32, job_text="channels: []",
            packages={"skyledger": "0.2.0"}, host="h", user="u",
            units=(UnitUse(role="t2:features", provenance=PROV),), **env,
        ),
        ConfigurationRegistered(
            stream="config:" + "c" * 32, config_hash="c" * 32, unit="T2LightCurveFeatures",
            config={"bands": ["g", "r"]}, **env,
        ),
        alert,
        dp,
        decision,
        state,
        result,
        ResultFailed(
            stream="ZTF21abiuvdk", result_id="8" * 32, subject=state.state_id, attempt=1,
            error="ValueError: too few points", traceback="Traceback ...",
            retry_after_s=30.0, provenance=PROV, causation=(state.id,), **env,
        ),
        intent,
        claim,
        ReactionIssued(
            stream=intent.stream, idempotency_key=intent.idempotency_key, target=intent.target,
            stock="ZTF21abiuvdk", outcome="delivered", provenance=PROV,
            causation=(claim.id, intent.id), **env,
        ),
        RunFinished(stream=f"run:{run_id}", run=run_id, status="ok", summary={"alerts": 1}, **env),
    ]  # fmt: skip


def write_fixture(path: str) -> None:
    """Write one stored row of each event type (the release fixture) to ``path``."""
    import json

    from skyledger.ledger.codec import encode

    with open(path, "w") as fh:
        for event in one_of_each():
            row = encode(event)
            line = {"id": row.id, "topic": row.topic, "stream": row.stream,
                    "state": row.state.decode()}  # fmt: skip
            fh.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    import sys
    from pathlib import Path

    write_fixture(str(Path(__file__).parent / "fixtures" / f"events-{sys.argv[1]}.jsonl"))
