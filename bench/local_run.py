"""Local-run rates: simulated ZTF alerts through T0+T1 and through T0-T3, each as a
ratio to the decode-only rate of the same packets measured in the same run.

    python bench/local_run.py [--alerts 100000] [--backend postgres|sqlite|both]
                              [--workers 2] [--decode-sample 20000]

The ZTF night packets (``../shared/data/ztf/night``, or ``--night``) are replayed by the
simulator as new stocks whose ~24 history entries are all new to the ledger (the worst
case). Decode-only: fastavro reading packets, nothing else, one process: the ceiling.
It is measured on the same packets (the first ``--decode-sample`` of them) before the
first run and again after each run, and each run's ratio is to the mean of the two
measurements beside it: the machine's speed drifts during a long benchmark.

T0+T1: a job with one filtered channel and the light-curve combiner: ingest (alerts and
datapoints), the channel's decision on every alert, and a state per alert the channel
accepts (the stock's datapoints as known at that alert). T0-T3: the demo's units on
each of those states (features with Bazin fits, the tied score), then a report (its
intents recorded, then delivered). Targets, as ratios to decode-only: T0+T1 at least
0.5, T0-T3 at least 0.3. Each run is a fresh ledger; the read model is not built (it is
a separate projection). The last line is (``decode_aps``: the mean of the decode-only
measurements beside the backend's runs; ``decode_spread``: their max / min):

    RESULT ingest_aps=... full_aps=... decode_aps=... ingest_ratio=... full_ratio=...
           decode_spread=... backend=...   (one line)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import math
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import fastavro

from skyledger.ledger import Ledger
from skyledger.runners.embedded import EmbeddedPostgres
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner, RunSummary
from skyledger.runners.simulate import SimulatedSource
from skyledger.units import Alert, Blob

NIGHT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ztf" / "night"
INGEST_TARGET = 0.5  # T0+T1, as a ratio to decode-only
FULL_TARGET = 0.3  # T0-T3, as a ratio to decode-only

INGEST_JOB = """
name: bench-ingest
channels:
  - name: TRANSIENTS
    filter: {unit: ZtfFilter, config: {min_rb: 0.5, min_ndet: 2}}
combiner: {unit: LightCurveCombiner}
"""
FULL_JOB = (
    INGEST_JOB.replace("bench-ingest", "bench-full")
    + """
t2:
  - unit: T2LightCurveFeatures
  - unit: T2CandidateScore
t3:
  - unit: ReportReactor
    config: {path: REPORT, limit: 50}
"""
)


def source(night: Path, alerts: int) -> SimulatedSource:
    originals = sum(
        1 for p in SimulatedSource({"paths": [str(night)]}).packets() if isinstance(p, Alert)
    )
    copies = max(1, math.ceil(alerts / originals))
    return SimulatedSource({"paths": [str(night)], "copies": copies})


def limited(src: SimulatedSource, alerts: int) -> Iterator[Alert]:
    n = 0
    for packet in src.packets():
        if isinstance(packet, Alert):
            yield packet
            n += 1
            if n >= alerts:
                return


def decode_rate(packets: list[bytes]) -> float:
    gc.collect()
    started = time.perf_counter()
    for data in packets:
        next(fastavro.reader(io.BytesIO(data)))
    return len(packets) / (time.perf_counter() - started)


def measured_decode(packets: list[bytes]) -> float:
    """Return the decode-only rate (the ceiling), printed."""
    rate = decode_rate(packets)
    ceiling = f"(fastavro, one process, {len(packets):,} packets: the ceiling)"
    print(f"decode only      {rate:>8,.0f} alerts/s  {ceiling}", flush=True)
    return rate


class ListSource(SimulatedSource):
    """The simulated packets, generated beforehand so that generation is not timed.

    With one worker, T0 takes the alerts decoded (``decoded``: as a live stream's
    consumer would after its own decode step, which is then not timed); with more, each
    worker decodes the packets' bytes itself, and decoding is timed.
    """

    alerts: list[Alert] = []
    decoded = False

    def packets(self) -> Iterator[Alert]:  # type: ignore[override]
        return iter(self.alerts)

    def blobs(self, start: int = 0) -> Iterator[Blob] | None:  # type: ignore[override]
        if self.decoded:
            return None
        return (Blob(a.packet, a.locator) for a in self.alerts[start:])


def run_job(url: str, text: str, alerts: list[Alert], workers: int) -> tuple[float, RunSummary]:
    ListSource.alerts, ListSource.decoded = alerts, workers <= 1
    src = ListSource({"paths": ["-"]})
    with Ledger.open(url) as ledger:
        gc.collect()
        started = time.perf_counter()
        runner = LocalRunner(
            parse_job(text), text, ledger, [src], read_model=False, workers=workers
        )
        summary = runner.run()
        aps = len(alerts) / (time.perf_counter() - started)
    read = summary.alerts.get("read")
    if read != len(alerts) or summary.status not in ("ok", "failed units"):
        raise SystemExit(f"run {summary.status}: {read} of {len(alerts)} alerts read")
    return aps, summary


def described(summary: RunSummary) -> str:
    """Return what a run made, in one line: decisions, states, results, reactions."""
    accepted = sum(d["accepted"] for d in summary.decisions.values())
    states = summary.states.get("new", 0) + summary.states.get("made_before", 0)
    results: Counter[str] = Counter()
    for outcomes in summary.results.values():
        results.update(outcomes)
    made = results["ok"] + results["reused"] + results["failed"] + results["dependency failed"]
    reactions = sum(int(r.get("delivered", 0)) for r in summary.reactions)
    text = f"{accepted:,} accepted, {states:,} states"
    if summary.results:
        text += f", {made:,} results ({results['ok']:,} ok, {results['reused']:,} reused)"
    if summary.reactions:
        text += f", {reactions:,} delivered"
    return text + (f" [{summary.status}]" if summary.status != "ok" else "")


def ratio_line(backend: str, stage: str, aps: float, decode: float, target: float) -> str:
    ratio = aps / decode
    verdict = "ok" if ratio >= target else "BELOW"
    return (
        f"{backend:8s} {stage:7s} {aps:>8,.0f} alerts/s  {ratio:5.3f} of decode-only "
        f"{decode:,.0f} (target >= {target}: {verdict})"
    )


@contextlib.contextmanager
def databases(backend: str) -> Iterator[list[str]]:
    if backend == "postgres":
        with EmbeddedPostgres() as server:
            yield [server.create_database(f"run{k}") for k in range(2)]
    else:
        with tempfile.TemporaryDirectory() as folder:
            yield [f"sqlite:///{folder}/ledger{k}.sqlite" for k in range(2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--backend", choices=["postgres", "sqlite", "both"], default="both")
    parser.add_argument("--night", type=Path, default=NIGHT)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (T0, T1, T2)")
    parser.add_argument(
        "--decode-sample", type=int, default=20_000, help="packets per decode-only measurement"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    alerts = list(limited(source(args.night, args.alerts), args.alerts))
    print(f"simulated {len(alerts):,} alerts in {time.perf_counter() - started:.1f} s", flush=True)
    sample = [a.packet for a in alerts[: args.decode_sample]]
    decodes = [measured_decode(sample)]

    def ceiling() -> float:
        """Measure decode-only again; return the mean of the two beside the last run."""
        decodes.append(measured_decode(sample))
        return statistics.mean(decodes[-2:])

    results: dict[str, tuple[float, float, float, float, list[float]]] = {}
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        first = len(decodes) - 1
        with databases(backend) as (ingest_url, full_url), tempfile.TemporaryDirectory() as tmp:
            ingest, summary = run_job(ingest_url, INGEST_JOB, alerts, args.workers)
            ingest_decode = ceiling()
            print(ratio_line(backend, "T0+T1", ingest, ingest_decode, INGEST_TARGET), flush=True)
            print(f"{'':17s}{described(summary)}", flush=True)
            full_text = FULL_JOB.replace("REPORT", str(Path(tmp) / "report.html"))
            full, summary = run_job(full_url, full_text, alerts, args.workers)
            full_decode = ceiling()
            print(ratio_line(backend, "T0-T3", full, full_decode, FULL_TARGET), flush=True)
            print(f"{'':17s}{described(summary)}", flush=True)
        results[backend] = (ingest, ingest_decode, full, full_decode, decodes[first:])

    last = backends[-1]
    ingest, ingest_decode, full, full_decode, measured = results[last]
    print(
        f"RESULT ingest_aps={ingest:.0f} full_aps={full:.0f} "
        f"decode_aps={statistics.mean(measured):.0f} ingest_ratio={ingest / ingest_decode:.3f} "
        f"full_ratio={full / full_decode:.3f} decode_spread={max(measured) / min(measured):.2f} "
        f"backend={last}"
    )


if __name__ == "__main__":
    main()
