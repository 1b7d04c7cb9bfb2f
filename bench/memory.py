"""A local run's memory as it grows longer: the peak resident memory of ``skyledger run``
over N copies of the real ZTF night beside the same over F times as many.

    python bench/memory.py [--copies 10] [--factor 4] [--night PATH]

Each run is a fresh ``skyledger run`` process on a fresh SQLite ledger, whose job reads
the night (``../shared/data/ztf/night``, 699 alerts) through the simulator as new stocks
(each copy moved in right ascension), with the T0-T3 units of the demo: a filtered
channel, the light-curve combiner, features and the score, and a report; the read model
is built as ``skyledger run`` does by default. Its peak resident set size is the kernel's
(``wait4``'s ``ru_maxrss``). A run whose memory does not grow with its length peaks at
about the same height at any length; the target (issue 23) is at most 30 MB between 10
and 40 copies. The last line::

    RESULT small_mb=... large_mb=... growth_mb=... per_alert_kb=... alerts=.../...

``per_alert_kb``: the growth over the extra alerts of the longer run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NIGHT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ztf" / "night"
TARGET_MB = 30.0

JOB = """
name: bench-memory
sources:
  - unit: SimulatedSource
    config: {{paths: [{night}], copies: {copies}, cutouts: false}}
channels:
  - name: TRANSIENTS
    filter: {{unit: ZtfFilter, config: {{min_rb: 0.5, min_ndet: 2}}}}
combiner: {{unit: LightCurveCombiner}}
t2:
  - unit: T2LightCurveFeatures
  - unit: T2CandidateScore
t3:
  - unit: ReportReactor
    config: {{path: {report}, limit: 50}}
"""


def peak(night: Path, copies: int) -> tuple[float, int, float]:
    """Run the job over ``copies`` copies; return (peak RSS in MB, alerts, seconds)."""
    with tempfile.TemporaryDirectory(prefix="skyledger-memory-") as folder:
        job = Path(folder) / "job.yaml"
        job.write_text(JOB.format(night=json.dumps(str(night)), copies=copies,
                                  report=json.dumps(str(Path(folder) / "report.html"))))
        command = [sys.executable, "-m", "skyledger.runners.cli", "run", str(job),
                   "--ledger", f"sqlite:///{folder}/ledger.sqlite", "--json"]
        started = time.perf_counter()
        with open(Path(folder) / "out.json", "wb") as out:
            child = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE)
            assert child.stderr is not None
            errors = child.stderr.read()
            _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"skyledger run failed:\n{errors.decode()}")
        summary = json.loads((Path(folder) / "out.json").read_text())
    alerts = int(summary["alerts"]["read"])
    return usage.ru_maxrss / 1024, alerts, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--night", type=Path, default=NIGHT)
    args = parser.parse_args()
    if not args.night.is_dir():
        raise SystemExit(f"no ZTF night at {args.night}: give --night PATH")
    runs = []
    for copies in (args.copies, args.copies * args.factor):
        mb, alerts, seconds = peak(args.night, copies)
        print(f"{copies:>4} copies: {alerts:>7,} alerts, peak {mb:7.1f} MB, {seconds:6.1f} s",
              flush=True)
        runs.append((mb, alerts))
    (small, n_small), (large, n_large) = runs
    growth = large - small
    per_alert = growth * 1024 / max(1, n_large - n_small)
    verdict = "ok" if growth <= TARGET_MB else "over"
    print(f"growth {growth:.1f} MB over {n_large - n_small:,} more alerts "
          f"(target <= {TARGET_MB:.0f}: {verdict})")
    print(f"RESULT small_mb={small:.1f} large_mb={large:.1f} growth_mb={growth:.1f} "
          f"per_alert_kb={per_alert:.2f} alerts={n_small}/{n_large}")


if __name__ == "__main__":
    main()
