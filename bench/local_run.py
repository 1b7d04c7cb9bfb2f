"""Local-run rates: simulated ZTF alerts through T0+T1 and through T0-T3, beside the
decode-only rate of the same packets measured in the same run.

    python bench/local_run.py [--alerts 100000] [--backend postgres|sqlite|both]

The ZTF night packets (``../shared/data/ztf/night``, or ``--night``) are replayed by the
simulator as new stocks whose ~24 history entries are all new to the ledger (the worst
case). Decode-only: fastavro reading every packet, nothing else, one process. T0+T1: a
job with one filtered channel and the light-curve combiner. T0-T3: the demo's units
(features with Bazin fits, the tied score, a report). Each run is a fresh ledger; the
read model is not built (it is a separate projection). The last line is:

    RESULT ingest_aps=... full_aps=... decode_aps=... ingest_ratio=... backend=postgres
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import math
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import fastavro

from ledger import Ledger
from runners.embedded import EmbeddedPostgres
from runners.job import parse_job
from runners.local import LocalRunner
from units import Alert, Blob
from units.simulate import SimulatedSource

NIGHT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ztf" / "night"

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


class ListSource(SimulatedSource):
    """The simulated packets, generated beforehand so that generation is not timed.

    With one worker, T0 takes the alerts decoded (as a live stream's consumer would
    after its own decode step, which is then not timed); with more, each worker decodes
    the packets' bytes itself, and decoding is timed.
    """

    alerts: list[Alert] = []

    def packets(self) -> Iterator[Alert]:  # type: ignore[override]
        return iter(self.alerts)

    def blobs(self) -> Iterator[Blob]:  # type: ignore[override]
        return (Blob(a.packet, a.locator) for a in self.alerts)


def run_job(url: str, text: str, alerts: list[Alert], workers: int) -> float:
    ListSource.alerts = alerts
    src = ListSource({"paths": ["-"]})
    with Ledger.open(url) as ledger:
        gc.collect()
        started = time.perf_counter()
        runner = LocalRunner(
            parse_job(text), text, ledger, [src], read_model=False, workers=workers
        )
        runner.run()
        return len(alerts) / (time.perf_counter() - started)


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
    parser.add_argument("--workers", type=int, default=2, help="T0 worker processes")
    args = parser.parse_args()

    started = time.perf_counter()
    alerts = list(limited(source(args.night, args.alerts), args.alerts))
    print(f"simulated {len(alerts):,} alerts in {time.perf_counter() - started:.1f} s", flush=True)
    decode = decode_rate([a.packet for a in alerts])
    print(f"decode only        {decode:>8,.0f} alerts/s (fastavro, one process)", flush=True)

    results: dict[str, tuple[float, float]] = {}
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        with databases(backend) as (ingest_url, full_url), tempfile.TemporaryDirectory() as tmp:
            ingest = run_job(ingest_url, INGEST_JOB, alerts, args.workers)
            print(f"{backend:8s} T0+T1   {ingest:>8,.0f} alerts/s", flush=True)
            full_text = FULL_JOB.replace("REPORT", str(Path(tmp) / "report.html"))
            full = run_job(full_url, full_text, alerts, args.workers)
            print(f"{backend:8s} T0-T3   {full:>8,.0f} alerts/s", flush=True)
        results[backend] = (ingest, full)

    last = backends[-1]
    ingest, full = results[last]
    print(
        f"RESULT ingest_aps={ingest:.0f} full_aps={full:.0f} decode_aps={decode:.0f} "
        f"ingest_ratio={ingest / decode:.3f} backend={last}"
    )


if __name__ == "__main__":
    main()
