"""The same log gives the same ledger: what the tiers append is a function of the packets'
order and the job, never of batch sizes, worker processes or how the input was split
into runs (a hypothesis property test over real packets)."""

from __future__ import annotations

import itertools
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
from skyledger.ledger import (
    ConfigurationRegistered,
    Event,
    Ledger,
    RunFinished,
    RunStarted,
    Shard,
    shard_of,
)
from skyledger.projections.projector import catch_up, catch_up_shards, tracking_of
from skyledger.projections.t0 import Ingest
from skyledger.projections.t1 import Combine
from skyledger.projections.t2 import Augment
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.runners.tiers import TIERS, JobUnits, build_tiers, register_configs
from skyledger.units import Alert
from skyledger.units.sources import FileSource, iter_packets

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data" / "ztf"

JOB = """
name: determinism
channels:
  - name: MANY
    filter: {unit: MinDetections, config: {n: 4}}
    autocomplete: true
  - name: ALL
combiner: {unit: AllPoints}
t2:
  - unit: CountPoints
  - unit: TotalFromCounts
  - unit: AlwaysFails
t3:
  - unit: CollectReactor
    config: {path: PATH}
    select: {channels: [MANY]}
retry: {max_attempts: 2, backoff_s: 0.0}
"""

RUN_RECORDS = (RunStarted, RunFinished)


def run_record(event: Event) -> bool:
    """Return True for what records a run rather than a fact: its start and end, and the
    configuration of its sources (which files a run read is how the input was split)."""
    if isinstance(event, ConfigurationRegistered):
        return event.unit == "FileSource"
    return isinstance(event, RUN_RECORDS)


@pytest.fixture(scope="module")
def packets(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Return real packets as files, in a fixed order: ZTF21abiuvdk's first alerts, with
    single alerts of the night (repacked from their container) and a truncated packet
    between them."""
    folder = tmp_path_factory.mktemp("packets")
    own = sorted((EXAMPLES / "ZTF21abiuvdk").glob("*.avro"))[:9]
    night = [p for p in iter_packets([EXAMPLES / "night"]) if isinstance(p, Alert)][:5]
    files: list[Path] = []
    for i, path in enumerate(own):
        files.append(folder / f"{i:02d}a-{path.name}")
        files[-1].write_bytes(path.read_bytes())
        if i < len(night):
            files.append(folder / f"{i:02d}b-{night[i].stock}.avro")
            files[-1].write_bytes(night[i].packet)
    files.insert(4, folder / "03c-truncated.avro")
    files[4].write_bytes(own[0].read_bytes()[:5000])
    return files


def run(url: str, job_text: str, chunks: list[list[Path]], batch: int | None, workers: int) -> None:
    job = parse_job(job_text)
    with Ledger.open(url) as ledger:
        for chunk in chunks:
            source = FileSource({"paths": [str(p) for p in chunk]})
            LocalRunner(job, job_text, ledger, [source], read_model=False, workers=workers,
                        batch_size=batch).run()  # fmt: skip


def facts(url: str) -> set[str]:
    """Return the ids of every event but the run records."""
    with Ledger.open(url) as ledger:
        return {e.id for e in ledger.read() if not run_record(e)}


@pytest.fixture(scope="module")
def job_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Return the job, its reactor writing into a folder of its own (one for all runs:
    its path is part of the reactor's configuration, and so of what is recorded)."""
    return JOB.replace("PATH", str(tmp_path_factory.mktemp("reactions") / "collected.txt"))


@pytest.fixture(scope="module")
def reference(
    packets: list[Path], job_text: str, tmp_path_factory: pytest.TempPathFactory
) -> set[str]:
    """Return the facts of one run over every packet, in batches of the default size."""
    url = f"sqlite:///{tmp_path_factory.mktemp('reference')}/ledger.sqlite"
    run(url, job_text, [packets], None, 1)
    return facts(url)


def test_the_reference_holds_a_state_per_followed_alert(
    packets: list[Path], job_text: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    run(url, job_text, [packets], None, 1)
    with Ledger.open(url) as ledger:
        kinds = Counter(type(e).__name__ for e in ledger.read())
    assert kinds["AlertReceived"] == len(packets)  # the truncated one too, as unreadable
    assert kinds["StateCombined"] == len(packets) - 1  # ALL follows every readable alert
    assert kinds["ReactionIntended"] >= 1


@pytest.fixture(scope="module", autouse=True)
def small_chunks() -> Iterator[None]:
    """Hand T1 and T2 work out two stocks at a time, so that worker processes share it."""
    before = Combine.stocks_per_chunk, Augment.stocks_per_chunk
    Combine.stocks_per_chunk = Augment.stocks_per_chunk = 2
    yield
    Combine.stocks_per_chunk, Augment.stocks_per_chunk = before


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cuts=st.sets(st.integers(min_value=1, max_value=13), max_size=3),
    batch=st.sampled_from([1, 2, 3, 7, 50, None]),
    workers=st.sampled_from([1, 2]),
)
def test_any_split_batch_size_and_worker_count_gives_the_same_facts(
    packets: list[Path],
    job_text: str,
    reference: set[str],
    tmp_path_factory: pytest.TempPathFactory,
    cuts: set[int],
    batch: int | None,
    workers: int,
) -> None:
    folder = tmp_path_factory.mktemp("split")
    bounds = [0, *sorted(c for c in cuts if c < len(packets)), len(packets)]
    chunks = [packets[a:b] for a, b in itertools.pairwise(bounds) if a < b]
    url = f"sqlite:///{folder}/ledger.sqlite"
    run(url, job_text, chunks, batch, workers)
    found = facts(url)
    assert found == reference, (
        f"{len(found - reference)} events only here, {len(reference - found)} only in the "
        f"reference (runs {[len(c) for c in chunks]}, batch {batch}, workers {workers})"
    )


@pytest.mark.postgres
def test_postgres_gives_the_facts_sqlite_gives(
    packets: list[Path], job_text: str, reference: set[str], pg_url: str
) -> None:
    chunks = [packets[:5], packets[5:6], packets[6:]]
    run(pg_url, job_text, chunks, 3, 2)
    assert facts(pg_url) == reference


def run_sharded(url: str, job_text: str, files: list[Path], shards: int, seed: int) -> None:
    """Ingest the packets, then drive every tier's projectors shard by shard, in a
    shuffled order, round after round until nothing moves: what several live workers,
    each holding some shards, do in some interleaving (and live T0, which decides
    several shards in one append: ``catch_up_shards``)."""
    job = parse_job(job_text)
    rng = random.Random(seed)
    with Ledger.open(url) as ledger:
        source = FileSource({"paths": [str(p) for p in files]})
        units = JobUnits(job, [source])
        run_id = uuid.uuid4().hex
        register_configs(ledger, units.all(), run_id)
        tiers = build_tiers(units, ledger, run_id, batch_size=rng.choice([1, 3, 50]))
        Ingest(ledger, units.shapers, units.filters, run_id, {}).run(source, "packets")
        work = [
            (projector, shard)
            for tier in TIERS
            for projector in tiers.of(tier)
            for shard in ([None] if projector.whole_pass else Shard.all(shards))
        ]
        for _ in range(50):
            rng.shuffle(work)
            if shards > 1:  # live T0's way too: some shards' decisions in one append
                some = rng.sample(list(Shard.all(shards)), rng.randint(1, shards))
                catch_up_shards(ledger, tiers.decide, some)
            moved = [catch_up(ledger, p, shard=s, shards=shards) for p, s in work]
            if all(m.end == m.start for m in moved):
                return
        raise AssertionError("the sharded tiers did not settle in 50 rounds")


@pytest.mark.postgres
@pytest.mark.parametrize("shards", [1, 3])
def test_tiers_driven_shard_by_shard_give_the_facts_of_a_local_run(
    packets: list[Path], job_text: str, reference: set[str], pg_url: str, shards: int
) -> None:
    run_sharded(pg_url, job_text, packets, shards, seed=shards)
    with Ledger.open(pg_url) as ledger:
        tracked = {n: ledger.tracked(n) for n in _sharded_names(ledger, job_text, shards)}
    assert facts(pg_url) == reference
    assert tracked
    assert all(tracked.values()), tracked  # every shard of every tier moved


def _sharded_names(ledger: Ledger, job_text: str, shards: int) -> list[str]:
    job = parse_job(job_text)
    tiers = build_tiers(JobUnits(job, [FileSource({"paths": ["unused"]})]), ledger, "x")
    return [
        tracking_of(p, s)
        for tier in TIERS
        for p in tiers.of(tier)
        if not p.whole_pass
        for s in Shard.all(shards)
    ]


def test_sqlite_reads_a_shard_as_postgresql_does(packets: list[Path], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    job = parse_job(JOB.replace("PATH", str(tmp_path / "c.txt")))
    with Ledger.open(url) as ledger:
        source = FileSource({"paths": [str(p) for p in packets]})
        units = JobUnits(job, [source])
        Ingest(ledger, units.shapers, units.filters, "r", {}).run(source, "packets")
        everything = ledger.read_batch(1, None, [], 10_000)
        for shard in Shard.all(2):
            got = ledger.read_batch(1, None, [], 2, shard)
            assert got == [e for e in everything if shard.holds(e.stream)][:2]
        assert {shard_of(e.stream, 2) for e in everything} == {0, 1}
