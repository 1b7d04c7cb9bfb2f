"""Live equals local: a relay and tier workers as real processes on a real PostgreSQL and
NATS JetStream, fed real ZTF packets over the bus, leave the ledger a local run of the
same job over the same packets leaves (event ids, run records aside), with several
workers per tier sharing the work; and every webhook key is delivered once."""

from __future__ import annotations

import asyncio
import itertools
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import Ledger, RunFinished
from runners.bus import Bus
from runners.embedded import EmbeddedNats
from runners.job import parse_job
from runners.live import LiveProcesses, packets_of, publish_packets, settle
from runners.local import LocalRunner
from tests.runners.live_kit import Keys, differences, facts, serving
from units.sources import FileSource

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data" / "ztf"
SHARDS = 4

JOB = """\
name: live
channels:
  - name: TRANSIENTS
    filter: {unit: ZtfFilter, config: {min_ndet: 2}}
    autocomplete: true
  - name: ALL
combiner: {unit: LightCurveCombiner}
t2:
  - unit: T2LightCurveFeatures
    config: {bazin: false}
  - unit: T2CandidateScore
t3:
  - unit: WebhookReactor
    config: {url: "URL"}
    select: {channels: [TRANSIENTS]}
retry: {max_attempts: 2, backoff_s: 0, lease_s: 5}
"""

_prefixes = itertools.count()


@pytest.fixture
def receiver() -> Iterator[Keys]:
    yield from serving()


def test_live_workers_on_nats_leave_the_ledger_a_local_run_leaves(
    tmp_path: Path, pg_url: str, nats_server: EmbeddedNats, receiver: Keys
) -> None:
    text = JOB.replace("URL", receiver.url)
    job_path = tmp_path / "job.yaml"
    job_path.write_text(text)
    job = parse_job(text)

    with Ledger.open(f"sqlite:///{tmp_path}/local.sqlite") as local:
        source = FileSource({"paths": [str(DATA)]})
        LocalRunner(job, text, local, [source], read_model=False).run()
        expected = facts(local, deliveries=True)
    local_keys = dict(receiver.keys)
    receiver.keys.clear()

    bus = Bus(nats_server.url, prefix=f"live{next(_prefixes)}", shards=SHARDS)
    workers = {"t0": 1, "t1": 2, "t2": 2, "t3": 2}
    logs = tmp_path / "logs"
    logs.mkdir()
    with (
        Ledger.open(pg_url) as ledger,
        LiveProcesses(str(job_path), pg_url, bus, workers, str(logs), metrics=True) as procs,
    ):
        procs.start_all()
        sent = asyncio.run(publish_packets(bus, packets_of([str(DATA)])))
        settle(ledger, bus, job, SHARDS, timeout_s=240, alive=procs.check)
        scraped = {role: scrape(procs.metrics_url(role)) for role in procs.roles()}
        codes = procs.stop()
        found = facts(ledger, deliveries=True)
        workers_seen = [e for e in ledger.read(types=[RunFinished])]
    assert sent == 140
    assert codes == dict.fromkeys(codes, 0), codes  # SIGTERM: finish, acknowledge, exit 0
    only_live, only_local = differences(found, expected)
    assert not only_live, only_live
    assert not only_local, only_local
    assert receiver.keys == Counter(local_keys)  # the same keys, each delivered once
    assert all(n == 1 for n in receiver.keys.values())
    assert len(workers_seen) == sum(workers.values())  # each worker recorded its end
    for role, (health, metrics) in scraped.items():
        assert health.startswith("ok"), (role, health)
        tier = role.split("#")[0]
        assert f'skyledger_events_processed_total{{tier="{tier}"}}' in metrics, role
    processed = {
        tier: sum(value(m, "skyledger_events_processed_total") for r, (_, m) in scraped.items()
                  if r.startswith(tier))
        for tier in ("relay", "t0", "t1", "t2", "t3")
    }  # fmt: skip
    assert all(n > 0 for n in processed.values()), processed
    assert sum(value(m, "skyledger_alerts_ingested_total") for _, m in scraped.values()) == 140


def scrape(base: str) -> tuple[str, str]:
    """Return a live process's /healthz and /metrics texts."""
    with urllib.request.urlopen(base + "/healthz", timeout=10) as answer:
        health = answer.read().decode()
    with urllib.request.urlopen(base + "/metrics", timeout=10) as answer:
        return health, answer.read().decode()


def value(metrics: str, name: str) -> float:
    """Return the sum of a metric's samples in Prometheus text."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(name + "{")
    )
