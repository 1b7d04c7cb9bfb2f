"""How far the ledger and its tiers are, for the status page: the ledger's head, the
read model's position, and for each running run each tier's position and lag.

A run's tiers are found again from the job text its ``RunStarted`` recorded (built
once per job and shard count, then cached); live workers split into shards are found
by the ``--shards`` their command line named.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from skyledger.ledger import Ledger
from skyledger.projections.queries import RunView
from skyledger.runners.job import parse_job
from skyledger.runners.live import TierLag, tier_lags, tier_names
from skyledger.runners.tiers import JobUnits

__all__ = ["RunLags", "lags_of_runs", "shards_of"]


class RunLags:
    """A running run and its tiers' lags (``error``: why they could not be found)."""

    def __init__(self, run: RunView, lags: Sequence[TierLag], error: str | None = None):
        self.run, self.lags, self.error = run, list(lags), error


_names: dict[tuple[str, int], dict[str, list[str]]] = {}
_lock = threading.Lock()


def shards_of(argv: Sequence[str] | None) -> int:
    """Return the shard count a command line named (``--shards N``), else 1."""
    words = list(argv or ())
    for k, word in enumerate(words):
        value = None
        if word == "--shards" and k + 1 < len(words):
            value = words[k + 1]
        elif word.startswith("--shards="):
            value = word.partition("=")[2]
        if value is not None and value.isdigit() and int(value) >= 1:
            return int(value)
    return 1


def _names_of(ledger: Ledger, run: RunView) -> dict[str, list[str]]:
    shards = shards_of(run.argv)
    key = (run.job_hash or run.run_id, shards)
    with _lock:
        if key not in _names:
            job = parse_job(run.job_text or "", f"run {run.run_id}")
            _names[key] = tier_names(ledger, JobUnits(job, sources=[]), shards)
        return _names[key]


def lags_of_runs(ledger: Ledger, runs: Sequence[RunView]) -> list[RunLags]:
    """Return each running run's tiers' lags."""
    found = []
    for run in runs:
        if run.status != "running":
            continue
        try:
            found.append(RunLags(run, tier_lags(ledger, _names_of(ledger, run))))
        except Exception as exc:  # a job of units not installed here: say so, go on
            found.append(RunLags(run, [], f"{type(exc).__name__}: {exc}"))
    return found
