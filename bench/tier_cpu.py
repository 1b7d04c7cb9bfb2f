"""Where a local run's time goes: wall and CPU time per alert, tier by tier, split between
the runner's process, its worker processes and the PostgreSQL server.

    python bench/tier_cpu.py [--alerts 20000] [--backend postgres|sqlite] [--workers 2]
                             [--profile FILE]

The same simulated ZTF alerts and T0-T3 job as ``bench/local_run.py``. Every tier is a
projector caught up by ``projections.projector.catch_up``; each catch-up is timed and
counted under its tier (T0 decisions, T1 combine, T2 augment, T3 react, T3 delivery),
wherever the runner calls it: the decisions catch up after each batch T0 ingest hands
to the ledger, and each tier first catches its upstream projectors up again, so the
"T0 ingest" line is ingest without its decisions, and "run, gaps" is what lies outside
the tiers (RunStarted, configurations, the worker pool, RunFinished). The catch-ups and
events columns say how often each tier was caught up and how many events it read (T1
makes a state per alert a channel accepts, T2 and T3 work per state). Ingest and its
decisions interleave: while the decisions catch up, the workers go on decoding the
chunks in flight and the ledger writes the batch just handed over, so the workers' and
the server's columns (and much of the wall) of "T0 decisions" are ingest's own work;
read T0 as the sum of its two lines.

CPU times are read from the processes (user + system, with reaped children): on a
machine whose cores are shared, a process's CPU time grows when the others are busy,
so compare columns of one run. The sum of the CPU columns of a tier, divided by the
cores, bounds its rate. ``--profile FILE`` runs the runner's process under cProfile and
writes its statistics to FILE (``python -m pstats FILE``); with ``--workers 1`` every
tier's Python work is in that process (times are then inflated by the profiler).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import itertools
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from local_run import FULL_JOB, NIGHT, ListSource, limited, source  # bench/, beside this file

import skyledger.runners.local as local_module
from skyledger.ledger import Ledger
from skyledger.runners.embedded import EmbeddedPostgres
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner

Mark = tuple[str, float, float, float, float]  # stage, wall, runner, workers, server

INGEST, T0, OTHER = "T0 ingest", "  T0 in all", "run, gaps"
STAGES = {  # projector class -> stage
    "Decide": "T0 decisions",
    "Combine": "T1 combine",
    "Augment": "T2 augment",
    "React": "T3 react",
    "Deliver": "T3 delivery",
}


def _cpu(process: psutil.Process) -> float:
    t = process.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def runner_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def workers_cpu() -> float:
    """CPU of this process's descendants but the database server (the forkserver reaps
    the workers, so their time stays on it after they exit)."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.name() != "postgres":
                total += _cpu(child)
    return total


def server_cpu(server: EmbeddedPostgres | None) -> float:
    if server is None:
        return 0.0
    total = 0.0
    with contextlib.suppress(psutil.Error):
        main = psutil.Process(server.proc.pid)
        for process in [main, *main.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += _cpu(process)
    return total


@contextlib.contextmanager
def ledger_url(backend: str, folder: str) -> Iterator[tuple[str, EmbeddedPostgres | None]]:
    if backend == "postgres":
        with EmbeddedPostgres() as server:
            yield server.create_database("tiers"), server
    else:
        yield f"sqlite:///{folder}/ledger.sqlite", None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--night", type=Path, default=NIGHT)
    parser.add_argument("--profile", type=Path, help="cProfile the runner's process into FILE")
    args = parser.parse_args()
    n = args.alerts
    ListSource.alerts = list(limited(source(args.night, n), n))
    ListSource.decoded = args.workers <= 1
    calls: Counter[str] = Counter()
    read: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp, ledger_url(args.backend, tmp) as (url, server):
        text = FULL_JOB.replace("REPORT", str(Path(tmp) / "report.html"))
        marks: list[Mark] = []

        def mark(stage: str) -> None:
            now = (time.perf_counter(), runner_cpu(), workers_cpu(), server_cpu(server))
            marks.append((stage, *now))

        def progress(stage: str, done: int, total: int | None) -> None:
            if stage == INGEST and marks[-1][0] != INGEST:
                mark(INGEST)

        catch_up = local_module.catch_up

        def timed(ledger: Ledger, projector: Any, *args: Any, **kwargs: Any) -> Any:
            stage, before = STAGES.get(type(projector).__name__, OTHER), marks[-1][0]
            mark(stage)
            done = catch_up(ledger, projector, *args, **kwargs)
            mark(INGEST if before == INGEST else OTHER)
            calls[stage] += 1
            read[stage] += done.read
            return done

        local_module.catch_up = timed  # type: ignore[assignment]
        profile = cProfile.Profile() if args.profile else None
        with Ledger.open(url) as ledger:
            runner = LocalRunner(
                parse_job(text), text, ledger, [ListSource({"paths": ["-"]})],
                progress=progress, read_model=False, workers=args.workers,
            )  # fmt: skip
            mark(OTHER)
            if profile is not None:
                profile.enable()
            summary = runner.run()
            if profile is not None:
                profile.disable()
            mark("end")
        local_module.catch_up = catch_up
    if profile is not None:
        profile.dump_stats(args.profile)
    totals: dict[str, list[float]] = {}  # stage -> wall, runner, workers, server
    for a, b in itertools.pairwise(marks):
        spent = totals.setdefault(a[0], [0.0] * 4)
        for i in range(4):
            spent[i] += b[i + 1] - a[i + 1]
    states = summary.states.get("states", 0)
    print(f"{n:,} alerts ({states:,} states), {args.backend}, {args.workers} workers")
    print(
        f"{'stage':14s} {'catch-ups':>9s} {'events':>8s} | ms per alert: "
        f"{'wall':>6s} {'runner':>7s} {'workers':>7s} {'server':>7s} {'cpu':>7s}"
    )
    t0 = [sum(totals.get(k, [0.0] * 4)[i] for k in (INGEST, STAGES["Decide"])) for i in range(4)]
    totals[T0] = t0
    for stage in [INGEST, STAGES["Decide"], T0, *list(STAGES.values())[1:], OTHER]:
        if stage not in totals:
            continue
        wall, *cpu = (t / n * 1e3 for t in totals[stage])
        print(
            f"{stage:14s} {calls[stage] or '':>9} {read[stage] or '':>8} | {'':14s}{wall:6.3f} "
            + " ".join(f"{c:7.3f}" for c in cpu)
            + f" {sum(cpu):7.3f}"
        )
    wall = marks[-1][1] - marks[0][1]
    print(f"in all: {wall:.1f} s, {n / wall:.0f} alerts/s; summary: {summary.status}")


if __name__ == "__main__":
    main()
