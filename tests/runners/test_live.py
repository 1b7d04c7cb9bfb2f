"""Live equals local: a relay and tier workers as real processes on a real PostgreSQL and
NATS JetStream, fed real ZTF packets over the bus, leave the ledger a local run of the
same job over the same packets leaves (event ids, run records aside), with several
workers per tier sharing the work; and every webhook key is delivered once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skyledger.ledger import Ledger, ResultDerived, ResultFailed, RunFinished
from skyledger.projections.readmodel import ReadModel, readmodel_url
from skyledger.runners.bus import Bus
from skyledger.runners.embedded import EmbeddedNats
from skyledger.runners.job import parse_job
from skyledger.runners.live import LiveProcesses, packets_of, publish_packets, settle
from skyledger.runners.local import LocalRunner
from skyledger.units import Alert
from skyledger.units.sources import FileSource, iter_packets
from tests.runners.live_kit import Keys, differences, facts, get, serving
from tests.runners.pipeline_units import retrying_job  # (and registers the test units)

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
        with kept_up(pg_url) as model:  # the read model caught up while live appends
            sent = asyncio.run(publish_packets(bus, packets_of([str(DATA)])))
            settle(ledger, bus, job, SHARDS, timeout_s=240, alive=procs.check)
        with model:
            model.catch_up(ledger)
            kept = model.digest()
        with ReadModel(f"sqlite:///{tmp_path}/rebuilt.sqlite") as rebuilt:
            rebuilt.create()
            rebuilt.catch_up(ledger)
            assert rebuilt.digest() == kept  # incremental during live equals rebuilt
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


@contextlib.contextmanager
def kept_up(url: str) -> Iterator[ReadModel]:
    """Catch a ledger's read model up every 0.2 s on a thread while the block runs (the
    caller closes the model)."""
    model = ReadModel(readmodel_url(url))
    model.create()
    stop = threading.Event()
    passes = [0]

    def follow() -> None:
        with Ledger.open(url) as ledger:
            while not stop.wait(0.2):
                model.catch_up(ledger)
                passes[0] += 1

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield model
    finally:
        stop.set()
        thread.join(60)
    assert passes[0] > 3  # it did catch up, many times, as the ledger grew


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


def test_a_t2_retry_is_a_delayed_redelivery_and_the_consumer_goes_on(
    tmp_path: Path, pg_url: str, nats_server: EmbeddedNats
) -> None:
    """One T2 worker, a unit failing on one stock with 12 s before its retry: while the
    retry waits (its notification handed back with that delay, not a sleep), the worker
    takes every other alert published meanwhile, of every shard."""
    alerts = [p for p in iter_packets([DATA / "night"]) if isinstance(p, Alert)]
    failing = Counter(a.stock for a in alerts).most_common(1)[0][0]  # two alerts
    first = next(a for a in alerts if a.stock == failing)
    rest = [a for a in alerts if a is not first]
    job_path = tmp_path / "job.yaml"
    job_path.write_text(retrying_job(failing, max_attempts=2, backoff_s=12))
    bus = Bus(nats_server.url, prefix=f"retry{next(_prefixes)}", shards=SHARDS)
    (tmp_path / "logs").mkdir()
    args = ["--import", "tests.runners.pipeline_units"]
    with (
        Ledger.open(pg_url) as ledger,
        LiveProcesses(str(job_path), pg_url, bus, None, str(tmp_path / "logs"),
                      worker_args=args, metrics=True) as procs,
    ):  # fmt: skip

        def attempts() -> list[int]:
            failed = ledger.read(types=[ResultFailed])
            return sorted(e.attempt for e in failed if isinstance(e, ResultFailed))

        def counted() -> int:
            return sum(1 for _ in ledger.read(types=[ResultDerived]))

        procs.start_all()
        asyncio.run(publish_packets(bus, [first.packet]))
        wait_for(lambda: attempts() == [1], procs)
        asyncio.run(publish_packets(bus, [a.packet for a in rest]))
        # Every result of every state, but FailsOn's and TotalFromCounts's (after it in
        # the job) on the failing stock's two, which wait:
        wait_for(lambda: counted() == 3 * len(alerts) - 4, procs, lambda: (counted(), attempts()))
        assert attempts() == [1, 1]  # both states of the failing stock wait for their retry
        wait_for(lambda: attempts() == [1, 1, 2, 2], procs)
        settle(ledger, bus, parse_job(job_path.read_text()), SHARDS, alive=procs.check)
        _, metrics = scrape(procs.metrics_url("t2#0"))
    assert value(metrics, "skyledger_messages_total") > 0
    deferred = 'skyledger_messages_total{outcome="deferred",tier="t2"}'
    assert value_of(metrics, deferred) > 0, metrics
    assert value_of(metrics, 'skyledger_failures_total{kind="unit",tier="t2"}') == 2


def wait_for(
    done: Callable[[], bool],
    procs: LiveProcesses,
    why: Callable[[], object] | None = None,
    timeout_s: float = 90.0,
) -> None:
    """Wait until ``done()`` holds, while the live processes are alive (``why()``: what
    to say if it never does)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        procs.check()
        if time.monotonic() > deadline:
            raise AssertionError(f"not done within {timeout_s} s: {why() if why else ''}")
        time.sleep(0.2)


def value_of(metrics: str, sample: str) -> float:
    """Return one sample's value in Prometheus text (0 if absent)."""
    for line in metrics.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


STUCK_JOB = """\
name: stuck
channels:
  - name: ALL
combiner: {unit: AllPoints}
t2:
  - unit: Sleeps
    config: {seconds: 8}
"""


def test_a_batch_past_stuck_after_is_reported_with_the_stacks_and_the_work_goes_on(
    tmp_path: Path, pg_url: str, nats_server: EmbeddedNats
) -> None:
    """A T2 unit asleep for 8 s on a worker given ``--stuck-after 2``: the worker writes
    its threads' stacks to its log, /healthz answers 503 saying so, and when the call
    returns the worker finishes the batch and is healthy again."""
    alert = next(p for p in iter_packets([DATA / "night"]) if isinstance(p, Alert))
    job_path = tmp_path / "job.yaml"
    job_path.write_text(STUCK_JOB)
    bus = Bus(nats_server.url, prefix=f"stuck{next(_prefixes)}", shards=SHARDS)
    logs = tmp_path / "logs"
    logs.mkdir()
    args = ["--import", "tests.runners.pipeline_units", "--stuck-after", "2"]
    with (
        Ledger.open(pg_url) as ledger,
        LiveProcesses(str(job_path), pg_url, bus, None, str(logs), worker_args=args,
                      metrics=True) as procs,
    ):  # fmt: skip
        procs.start_all()
        asyncio.run(publish_packets(bus, [alert.packet]))
        health = procs.metrics_url("t2#0") + "/healthz"
        wait_for(lambda: get(health)[0] == 503, procs, lambda: get(health))
        code, why = get(health)
        assert code == 503
        assert why.startswith("stuck: one batch has run for"), why
        log = (logs / "t2-0.log").read_text()
        assert "every thread's stack follows" in log
        assert 'pipeline_units.py", line' in log  # the unit, asleep
        assert "in process" in log
        wait_for(lambda: get(health)[0] == 200, procs, lambda: get(health))
        settle(ledger, bus, parse_job(STUCK_JOB), SHARDS, alive=procs.check)
        assert sum(1 for _ in ledger.read(types=[ResultDerived])) == 1
        assert "the batch taken for stuck ended after" in (logs / "t2-0.log").read_text()
