"""A live T3 worker SIGKILLed between a webhook POST and its outcome: ``skyledger runs``
shows its run as gone, with when it was last seen (its last heartbeat), not as running;
the worker started in its place POSTs the cut delivery again with the same key once the
lease is over, and counts it as a redelivery in its summary and its metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skyledger.ledger import Ledger, ReactionIntended, ReactionIssued, StateCombined
from skyledger.runners.bus import Bus
from skyledger.runners.embedded import EmbeddedNats
from skyledger.runners.live import LiveProcesses, packets_of, publish_packets
from tests.runners.live_kit import get, serve
from tests.runners.test_exactly_once import Receiver

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "examples" / "data" / "ztf" / "ZTF21abiuvdk"  # 34 alerts of one stock
TIMEOUT_S = 120.0
HEARTBEAT_S = 3.0  # a run is gone 3 heartbeats after its last one (a worker starved of
# CPU can beat a few seconds late: shorter beats made a live worker look gone under load)

JOB = """\
name: cut
channels:
  - name: ALL
combiner: {unit: LightCurveCombiner}
t3:
  - unit: WebhookReactor
    config: {url: "URL"}
retry: {max_attempts: 2, backoff_s: 0, lease_s: 1}
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Serve a receiver that SIGKILLs the armed process on the first POST, unanswered."""
    yield from serve(Receiver())


def runs(url: str, as_json: bool = True) -> Any:
    """Return ``skyledger runs`` of a ledger: the JSON list, or the table's text."""
    command = [sys.executable, "-m", "skyledger.runners.cli", "runs", "--ledger", url,
               "--limit", "50"]
    done = subprocess.run(
        [*command, *(["--json"] if as_json else [])], capture_output=True, text=True,
        timeout=TIMEOUT_S, env=os.environ | {"COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if as_json else done.stdout


def issued(ledger: Ledger) -> list[ReactionIssued]:
    """Return the delivery outcomes in a ledger."""
    return [e for e in ledger.read(types=[ReactionIssued]) if isinstance(e, ReactionIssued)]


def tier_of(run: dict[str, Any]) -> str:
    """Return the tier of a live worker's run (``skyledger worker TIER JOB ...``)."""
    argv = run["argv"]
    return str(argv[argv.index("worker") + 1])


def until(
    done: Callable[[], Any],
    procs: LiveProcesses,
    what: str,
    skip: str = "",
    why: Callable[[], object] = lambda: "",
) -> Any:
    """Wait until ``done()`` gives something true and return it, while every process but
    ``skip`` is alive; AssertionError naming ``what`` (and ``why()``) after TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        found = done()
        if found:
            return found
        for role, proc in procs.procs.items():
            assert role == skip or proc.poll() is None, f"{role} exited waiting for {what}"
        assert time.monotonic() < deadline, f"not within {TIMEOUT_S} s: {what}: {why()}"
        time.sleep(0.3)


def test_a_killed_worker_is_shown_gone_and_its_cut_delivery_is_counted_redelivered(
    tmp_path: Path, pg_url: str, nats_server: EmbeddedNats, receiver: Receiver
) -> None:
    job_path = tmp_path / "job.yaml"
    job_path.write_text(JOB.replace("URL", receiver.url))
    bus = Bus(nats_server.url, prefix="gone", shards=4)
    (tmp_path / "logs").mkdir()
    no_proxy = {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    with (
        Ledger.open(pg_url) as ledger,
        LiveProcesses(str(job_path), pg_url, bus, None, str(tmp_path / "logs"), no_proxy,
                      ["--heartbeat", str(HEARTBEAT_S)], metrics=True) as procs,
    ):  # fmt: skip
        procs.start_all()
        receiver.arm(procs.procs["t3#0"])  # killed on the first POST, before its answer
        asyncio.run(publish_packets(bus, packets_of([str(ALERTS)])))
        until(lambda: procs.procs["t3#0"].poll() is not None, procs, "the kill", skip="t3#0")

        seen: list[Any] = []

        def gone() -> list[dict[str, Any]]:
            """The killed T3 worker's run gone while the others run: read again while a
            live worker starved of CPU (a loaded machine) beats late and looks gone too."""
            seen[:] = [runs(pg_url)]
            killed = [r for r in seen[0] if r["status"] == "gone" and tier_of(r) == "t3"]
            others = [r for r in seen[0] if r not in killed]
            return seen[0] if killed and all(r["status"] == "running" for r in others) else []

        found = until(gone, procs, "the killed run shown gone", "t3#0", lambda: seen)
        table = runs(pg_url, as_json=False)
        procs.start("t3#0")  # a worker in its place takes the cut delivery over

        def delivered() -> bool:
            states = sum(1 for _ in ledger.read(types=[StateCombined]))
            intents = {e.idempotency_key for e in ledger.read(types=[ReactionIntended])}
            keys = {e.idempotency_key for e in issued(ledger) if e.outcome == "delivered"}
            return states == len(intents) == len(keys) == 34

        until(delivered, procs, "every reaction delivered")
        _, metrics = get(procs.metrics_url("t3#0") + "/metrics")
        codes = procs.stop()
        outcomes = issued(ledger)
    after = runs(pg_url)
    by_tier = {tier_of(r): r for r in found if r["status"] != "gone"}
    [killed] = [r for r in found if r["status"] == "gone"]
    assert tier_of(killed) == "t3"
    assert sorted(by_tier) == ["t0", "t1", "t2"]  # beating: running
    assert all(r["status"] == "running" for r in by_tier.values())
    last_seen = dt.datetime.fromisoformat(killed["last_seen"])
    assert dt.datetime.fromisoformat(killed["started"]) <= last_seen
    assert killed["finished"] is None
    assert killed["heartbeat_s"] == HEARTBEAT_S
    assert f"gone (last seen {last_seen:%Y-%m-%d %H:%M:%S})" in table

    assert codes == dict.fromkeys(codes, 0), codes
    statuses = {r["run_id"]: r["status"] for r in after}
    assert statuses[killed["run_id"]] == "gone"  # still: it never finished
    [again] = [r for r in after if tier_of(r) == "t3" and r["run_id"] != killed["run_id"]]
    assert again["status"] == "ok"
    assert again["summary"]["redelivered"] == 1
    assert again["summary"]["delivered"] == 34
    assert 'skyledger_redeliveries_total{tier="t3"} 1.0' in metrics
    assert 'skyledger_deliveries_total{outcome="delivered",tier="t3"} 34.0' in metrics

    posts = Counter(p.key for p in receiver.seen())
    cut = receiver.seen()[0].key
    assert posts[cut] == 2  # the cut delivery reached the receiver twice, with one key
    assert all(n == 1 for key, n in posts.items() if key != cut)
    delivered_keys = Counter(e.idempotency_key for e in outcomes if e.outcome == "delivered")
    assert len(delivered_keys) == 34
    assert set(delivered_keys.values()) == {1}  # one delivered outcome per key
