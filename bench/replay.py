"""Replay rates: a job replayed as a variant over a ledger of a million events, beside
the raw read-and-decode rate of the same ledger, with the replay's peak memory.

    python bench/replay.py [--events 1000000] [--backend postgres|sqlite] [--workers 2]

The ledger is built with the simulator: the ZTF night packets (``../shared/data/ztf/
night``, or ``--night``) replayed as new stocks (without cutouts), through a job with
one channel that follows every alert, the light-curve combiner (a state per alert) and
the demo's T2 units: T2LightCurveFeatures (features and Bazin fits) and
T2CandidateScore (a cheap score from the features). Alerts are added until the ledger
holds ``--events`` events.

Then, each in a process of its own (so that its peak memory is its own):

* cheap: the job with another configuration of T2CandidateScore, replayed as a
  variant in one process (as the ceiling is measured): the decisions and states are
  found done (their positions at the head), the features reused by id, and a score
  computed for every state. ``replay_eps`` is the ledger's events (its head before the
  replay) over the replay's time;
* light curve: another configuration of T2LightCurveFeatures, with ``--workers``
  worker processes: the features (with their fits) and the score that depends on them
  computed again for every state;
  ``lc_stocks_per_s`` is the stocks over that replay's time (states per second are
  printed too).

The ceiling, ``read_eps``: every event of the same ledger read and decoded into its
event object (``Ledger.read``), measured before the replays and after them; the ratio
is to the mean of the two. Targets: ``replay_ratio`` at least 0.25 for the cheap unit,
and peak memory under 500 MB: the largest resident memory of a replay, its worker
processes included (sampled five times a second), or its own peak if larger. The read
model is not built (a separate projection). The last line:

    RESULT replay_eps=... read_eps=... replay_ratio=... lc_stocks_per_s=... peak_rss_mb=...
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from skyledger.ledger import Ledger, LedgerSettings, StateCombined
from skyledger.runners.embedded import EmbeddedPostgres
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.runners.replay import ReplayRunner
from skyledger.runners.simulate import SimulatedSource
from skyledger.units import Alert, Blob

NIGHT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ztf" / "night"
RATIO_TARGET = 0.25
MEMORY_TARGET_MB = 500.0

JOB = """
name: bench-replay
channels:
  - name: ALL
combiner: {unit: LightCurveCombiner}
t2:
  - unit: T2LightCurveFeatures
    config: {color_window_days: LC_WINDOW}
  - unit: T2CandidateScore
    config: {amplitude_mag: [SCORE_LOW, 1.0]}
"""


def job(score_low: float = 0.2, lc_window: float = 1.0) -> str:
    """Return the job's text with the configurations a variant changes."""
    return JOB.replace("SCORE_LOW", str(score_low)).replace("LC_WINDOW", str(lc_window))


class Packets(SimulatedSource):
    """Simulated packets, generated before the run so that generation is not timed."""

    blobs_: list[Blob] = []

    def blobs(self, start: int = 0) -> Iterator[Blob] | None:
        return iter(self.blobs_[start:])


def simulated(night: Path, copies: int, first_copy: int, originals: int) -> list[Blob]:
    """Return simulated packets (copies ``first_copy`` on of the night) as blobs."""
    src = SimulatedSource({"paths": [str(night)], "copies": first_copy + copies, "cutouts": False})
    found = []
    for n, packet in enumerate(src.packets()):
        if n >= first_copy * originals and isinstance(packet, Alert):
            found.append(Blob(packet.packet, packet.locator))
    return found


def build(url: str, night: Path, events: int, workers: int) -> tuple[int, int]:
    """Add simulated alerts through the job until the ledger holds ``events`` events;
    return (alerts, seconds)."""
    text = job()
    alerts, started, copy = 0, time.perf_counter(), 0
    originals = sum(1 for p in SimulatedSource({"paths": [str(night)]}).packets()
                    if isinstance(p, Alert))  # fmt: skip
    with Ledger.open(LedgerSettings.load(ledger=url)) as ledger:
        while ledger.head() < events:
            per_alert = ledger.head() / alerts if alerts else 28.0  # events an alert makes
            wanted = (events - ledger.head()) / per_alert
            copies = min(max(1, math.ceil(wanted / originals)), 20)  # at most ~14,000 a round
            Packets.blobs_ = simulated(night, copies, copy, originals)
            copy += copies
            src = Packets({"paths": [str(night)], "copies": copy})  # a key per round
            summary = LocalRunner(parse_job(text), text, ledger, [src], read_model=False,
                                  workers=workers).run()  # fmt: skip
            alerts += len(Packets.blobs_)
            took = time.perf_counter() - started
            print(f"built: {alerts:,} alerts, {ledger.head():,} events ({summary.status}, "
                  f"{took:.0f} s)", flush=True)  # fmt: skip
    return alerts, round(time.perf_counter() - started)


def read_rate(url: str) -> float:
    """Return events per second of reading and decoding the whole ledger, printed."""
    gc.collect()
    with Ledger.open(LedgerSettings.load(ledger=url)) as ledger:
        started = time.perf_counter()
        n = sum(1 for _ in ledger.read())
        rate = n / (time.perf_counter() - started)
    print(f"read and decode  {rate:>10,.0f} events/s  ({n:,} events: the ceiling)", flush=True)
    return rate


class PeakMemory:
    """Samples the resident memory of this process and every process under it (the
    run's worker processes) five times a second; keeps the largest total and this
    process's own peak."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._done.wait(0.2):
            total = 0
            for process in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak_mb = max(self.peak_mb, total / 2**20)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    @staticmethod
    def own_mb() -> float:
        """Return this process's peak resident memory (VmHWM: since it started, unlike
        ru_maxrss, which keeps the parent's from before exec)."""
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def replay_once(url: str, text: str, variant: str, workers: int) -> dict[str, Any]:
    """Replay in this process (called as a child): time, ledger size, states, peak
    memory (all its processes together, and its own)."""
    with Ledger.open(LedgerSettings.load(ledger=url)) as ledger:
        head = ledger.head()
        gc.collect()
        with PeakMemory() as memory:
            started = time.perf_counter()
            summary = ReplayRunner(parse_job(text), text, ledger, variant, read_model=False,
                                   workers=workers).run()  # fmt: skip
            seconds = time.perf_counter() - started
    if summary.status != "ok":
        raise SystemExit(f"replay {variant}: {summary.status}")
    states = sum(summary.results.get("T2CandidateScore", {}).values())
    return {
        "seconds": seconds, "head": head, "states": states, "results": summary.results,
        "peak_rss_mb": max(memory.peak_mb, PeakMemory.own_mb()), "own_rss_mb": PeakMemory.own_mb(),
    }  # fmt: skip


def replay(url: str, text: str, variant: str, workers: int) -> dict[str, Any]:
    """Replay in a child process; return what it measured."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", url, "--variant", variant, "--workers",
         str(workers)],
        input=text, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"replay {variant} failed:\n{done.stderr}")
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def stocks_of(url: str) -> int:
    with Ledger.open(LedgerSettings.load(ledger=url)) as ledger:
        return len({e.stream for e in ledger.read(types=[StateCombined])})


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "postgres":
        with EmbeddedPostgres() as server:
            yield server.create_database("replay")
    else:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/ledger.sqlite"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--night", type=Path, default=NIGHT)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (T1, T2)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(replay_once(args.child, sys.stdin.read(), args.variant, args.workers)))
        return

    with database(args.backend) as url:
        alerts, seconds = build(url, args.night, args.events, args.workers)
        print(f"ledger built: {alerts:,} alerts in {seconds} s ({args.backend})", flush=True)
        reads = [read_rate(url)]
        cheap = replay(url, job(score_low=0.3), "cheap", 1)  # one process, as the ceiling
        eps = cheap["head"] / cheap["seconds"]
        print(f"replay, cheap    {eps:>10,.0f} events/s  ({cheap['head']:,.0f} events, "
              f"{cheap['states']:,.0f} scores in {cheap['seconds']:.1f} s, one process, "
              f"peak {cheap['peak_rss_mb']:.0f} MB)",
              flush=True)  # fmt: skip
        lc = replay(url, job(lc_window=2.0), "light-curve", args.workers)
        stocks = stocks_of(url)
        print(f"replay, lc       {stocks / lc['seconds']:>10,.1f} stocks/s  ({stocks:,} stocks, "
              f"{lc['states'] / lc['seconds']:,.1f} states/s, {lc['seconds']:.1f} s, "
              f"{args.workers} workers, peak {lc['peak_rss_mb']:.0f} MB with them, replay "
              f"process {lc['own_rss_mb']:.0f} MB)",
              flush=True)  # fmt: skip
        reads.append(read_rate(url))
    read_eps = statistics.mean(reads)
    ratio = eps / read_eps
    peak = max(cheap["peak_rss_mb"], lc["peak_rss_mb"])
    print(f"replay_ratio {ratio:.3f} (target >= {RATIO_TARGET}: "
          f"{'ok' if ratio >= RATIO_TARGET else 'BELOW'}); peak {peak:.0f} MB (target < "
          f"{MEMORY_TARGET_MB:.0f}: {'ok' if peak < MEMORY_TARGET_MB else 'ABOVE'}); "
          f"read spread {max(reads) / min(reads):.2f}", flush=True)  # fmt: skip
    print(
        f"RESULT replay_eps={eps:.0f} read_eps={read_eps:.0f} replay_ratio={ratio:.3f} "
        f"lc_stocks_per_s={stocks / lc['seconds']:.1f} peak_rss_mb={peak:.0f}"
    )


if __name__ == "__main__":
    main()
