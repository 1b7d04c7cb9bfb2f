"""Where a local run's time goes: wall and CPU time per alert, tier by tier, split between
the runner's process, its worker processes and the PostgreSQL server.

    python bench/tier_cpu.py [--alerts 20000] [--backend postgres|sqlite] [--workers 2]

The same simulated ZTF alerts and T0-T3 job as ``bench/local_run.py``. CPU times are
read from the processes (user + system, with reaped children): on a machine whose cores
are shared, a process's CPU time grows when the others are busy, so compare columns of
one run. The sum of the CPU columns of a tier, divided by the cores, bounds its rate.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from local_run import FULL_JOB, NIGHT, ListSource, limited, source  # bench/, beside this file

from ledger import Ledger
from runners.embedded import EmbeddedPostgres
from runners.job import parse_job
from runners.local import LocalRunner

Mark = tuple[str, float, float, float, float]  # stage, wall, runner, workers, server


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
    args = parser.parse_args()
    n = args.alerts
    ListSource.alerts = list(limited(source(args.night, n), n))
    with tempfile.TemporaryDirectory() as tmp, ledger_url(args.backend, tmp) as (url, server):
        text = FULL_JOB.replace("REPORT", str(Path(tmp) / "report.html"))
        marks: list[Mark] = []

        def mark(stage: str) -> None:
            now = (time.perf_counter(), runner_cpu(), workers_cpu(), server_cpu(server))
            marks.append((stage, *now))

        def progress(stage: str, done: int, total: int | None) -> None:
            if marks[-1][0] != stage:
                mark(stage)

        with Ledger.open(url) as ledger:
            runner = LocalRunner(
                parse_job(text), text, ledger, [ListSource({"paths": ["-"]})],
                progress=progress, read_model=False, workers=args.workers,
            )  # fmt: skip
            mark("start")
            runner.run()
            mark("end")
    print(f"{n:,} alerts, {args.backend}, {args.workers} workers; ms per alert:")
    print(f"{'stage':20s} {'wall':>7s} {'runner':>7s} {'workers':>7s} {'server':>7s}")
    for a, b in itertools.pairwise(marks):
        print(f"{a[0]:20s} " + " ".join(f"{(b[i] - a[i]) / n * 1e3:7.3f}" for i in range(1, 5)))
    wall = marks[-1][1] - marks[0][1]
    print(f"in all: {wall:.1f} s, {n / wall:.0f} alerts/s")


if __name__ == "__main__":
    main()
