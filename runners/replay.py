"""Replay: a job's tiers over what the ledger holds, recorded as a named variant.

    skyledger replay JOB.yaml --variant v2 [--since P|T] [--until P|T] [--stock ID]...
                                           [--channel NAME]... [--deliver]

A replay is a local run without sources: the channels' filters decide on every alert
the ledger ever received (rejected ones included; packets the run did not read are
decoded again from their stored bytes), then T1, T2 and T3 catch up as in a run. Each
projector's position is named after its units and those upstream of it, so only what
the job changes is computed: a filter, combiner or T2 entry whose name, version, code
digest and configuration are unchanged finds its work done (its position at the head,
its results in the ledger by id). What a replay appends sits beside what other variants
appended, never in their place: states and results are identified by the units that
made them.

Reactions are recorded as intents; they are delivered only with ``deliver`` (and an
intent already delivered, under the same idempotency key, is never delivered again).
A replay that stops half-way resumes from its positions when run again. With limits,
the projectors go over the alerts within them only, under positions of their own
(``projections.limits``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from skyledger.ledger import ConfigError, Ledger, Provenance, ReplayLimits, RunStarted
from skyledger.projections.decide import Decide
from skyledger.projections.diff import Side, check_seen, unknown_side
from skyledger.projections.identity import unit_identity
from skyledger.projections.limits import Limits
from skyledger.projections.outbox import Deliver
from skyledger.projections.pool import Workers
from skyledger.projections.projector import Projector
from skyledger.projections.reshape import shaper_tag
from skyledger.projections.scope import Scope
from skyledger.projections.stocks import Channels, Shaping
from skyledger.projections.t0 import Verdicts
from skyledger.runners.job import Job, load_job, parse_job
from skyledger.runners.local import LocalRunner, Progress
from skyledger.runners.summary import RunSummary
from skyledger.runners.tiers import JobUnits, run_started, unit_uses
from skyledger.units import Shaper, Unit

__all__ = [
    "ReplayRunner",
    "as_recorded",
    "covered",
    "is_job_file",
    "only_channels",
    "runs_of",
    "shaping_of",
    "side_of",
]

U = TypeVar("U", bound=Unit | None)

_VARIANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def only_channels(job: Job, names: Sequence[str]) -> Job:
    """Return the job with only the channels named (reactors keep the channels they
    select among them; a reactor that selects none of them is left out)."""
    known = [c.name for c in job.channels]
    unknown = [n for n in names if n not in known]
    if unknown:
        msg = f"--channel {', '.join(unknown)}: not a channel of the job ({', '.join(known)})"
        raise ConfigError(msg)
    data = job.model_dump(mode="json")
    data["channels"] = [c for c in data["channels"] if c["name"] in names]
    kept = []
    for t3 in data["t3"]:
        selected = t3["select"]["channels"]
        if selected is not None:
            selected = [c for c in selected if c in names]
            if not selected:
                continue
            t3["select"]["channels"] = selected
        kept.append(t3)
    data["t3"] = kept
    return Job.model_validate(data)


class ReplayRunner(LocalRunner):
    """Runs a job's tiers over the ledger as a variant (see the module docstring)."""

    def __init__(
        self,
        job: Job,
        job_text: str,
        ledger: Ledger,
        variant: str,
        limits: Limits | None = None,
        deliver: bool = False,
        progress: Progress | None = None,
        read_model: bool = True,
        workers: int = 1,
        batch_size: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        channels: Sequence[str] | None = None,
    ) -> None:
        if channels:  # only these channels of the job (the job's text is recorded whole)
            job = only_channels(job, channels)
        super().__init__(job, job_text, ledger, (), progress, read_model, workers, batch_size,
                         sleep)  # fmt: skip
        self.variant = variant
        self.limits = limits or Limits()
        self.only = tuple(channels) if channels else None
        self.deliver = deliver

    def _started(self) -> RunStarted:
        """Record the replay with its limits, if any (a diff compares only what they
        cover: ``side_of``)."""
        limits = None
        if self.limits or self.only is not None:
            stocks = self.limits.stocks
            limits = ReplayLimits(since=self.limits.since, until=self.limits.until,
                                  stocks=None if stocks is None else tuple(sorted(stocks)),
                                  channels=self.only)  # fmt: skip
        return run_started(self.job, self.job_text, self.job_units, self.run_id, self.variant,
                           limits)  # fmt: skip

    def check(self) -> None:
        """Refuse a bad variant name and one that names another job already; find the
        surveys whose shaper differs from the one that made the ledger's datapoints at
        ingest (their packets are shaped again, into the variant's own datapoints)."""
        variant = self.variant or ""
        if not _VARIANT.match(variant):
            msg = f"--variant {variant!r}: 1 to 64 letters, digits, '_', '.' or '-'"
            raise ConfigError(msg)
        runs = runs_of(self.ledger)
        for event in runs:
            if event.variant == self.variant and event.job_hash != self.job.hash:
                msg = (
                    f"--variant {self.variant}: already the name of another job (hash "
                    f"{event.job_hash[:12]}, run {event.run[:12]}); give this one another name"
                )
                raise ConfigError(msg)
        self.shaping = shaping_of(runs, self.shapers)

    def _limited(self, projector: Projector) -> Projector:
        return self.limits.apply(projector)

    def _deliver(self, stage: str, deliver: Deliver) -> None:
        if self.deliver:
            super()._deliver(stage, deliver)

    def _t0(
        self,
        summary: RunSummary,
        decide: Decide,
        verdicts: Verdicts,
        pool: Workers | None,
        cause: tuple[str, ...],
    ) -> None:
        """No ingest: the decisions go over the alerts the ledger holds (and the job's
        own shapers, if they differ from ingest's, over their stored packets)."""
        if self.reshape is not None:
            self._catch_up("T0 shaping again", self.reshape)
        done = self._catch_up("T0 decisions", decide)
        summary.replay = {
            "limits": self.limits.as_dict(),
            "channels": [c.name for c in self.job.channels],
            "alerts_gone_over": done.read,  # by the decisions (0: their filters unchanged)
            "deliver": self.deliver,
            "reshaped": None if self.reshape is None else {
                "shapers": dict(self.shaping.tags) if self.shaping else {},
                "alerts": self.reshape.counts["alerts"],
                "datapoints": self.reshape.counts["datapoints"],
                "failed": self.reshape.counts["failed"],
                "failures": self.reshape.failures[:20],
            },
        }  # fmt: skip
        if self.reshape is not None:
            summary.failures += [{"tier": "T0", "unit": "shaper", "stock": "", "error": f}
                                 for f in self.reshape.failures]  # fmt: skip
        names = [c.name for c in decide.channels]
        summary.decided(names, [c.filter for c in decide.channels], decide.stats)


def runs_of(ledger: Ledger) -> list[RunStarted]:
    """Return the record of every run, live worker and replay, in log order."""
    return [e for e in ledger.read(types=[RunStarted]) if isinstance(e, RunStarted)]


def shaping_of(runs: Sequence[RunStarted], shapers: Mapping[str, Shaper]) -> Shaping:
    """Return which datapoints a job with these shapers reads: for each survey whose
    shaper is not one that ingested alerts into the ledger (as ``runs``, its runs and
    live workers, recorded), those its own shaper makes again from the stored packets."""
    ingested: dict[str, list[dict[str, str]]] = {}
    for event in runs:
        if event.variant is None:  # replays ingest nothing
            for use in event.units:
                if use.role.startswith("shaper:"):
                    survey = use.role.removeprefix("shaper:")
                    ingested.setdefault(survey, []).append(use.provenance.identity())
    tags = [
        (survey, shaper_tag(shaper))
        for survey, shaper in sorted(shapers.items())
        if ingested.get(survey) and unit_identity(shaper) not in ingested[survey]
    ]
    return Shaping(tuple(tags))


def is_job_file(spec: str) -> bool:
    """Return True for a side of a diff that names a job file (by its name alone: the
    file system is not looked at)."""
    return spec.endswith((".yaml", ".yml")) or "/" in spec or "\\" in spec


def side_of(
    ledger: Ledger, spec: str, job_files: bool = True, scope: Scope | None = None
) -> tuple[Side, list[str]]:
    """Return one side of a diff: a job file (its units as installed), a variant's name
    (its latest replay) or a run's id (or the start of one), with the units as that run
    recorded them (version and code digest); and notes, for the units recorded otherwise
    than they are installed. A variant or run that was a limited replay covers what its
    limits do (:func:`covered`). Without ``job_files`` (over HTTP) the file system is
    never looked at, and a variant or run that does not exist is ``NotFound`` without
    naming the others, as is one whose channels (as its run recorded them) the caller's
    ``scope`` has none of: before its job is read, so that nothing else tells them apart."""
    recorded: RunStarted | None = None
    limits: ReplayLimits | None = None
    runs = runs_of(ledger)
    if job_files and (is_job_file(spec) or Path(spec).is_file()):
        job, _ = load_job(spec)
    else:
        named = [e for e in runs if e.variant == spec]
        if not named and len(spec) >= 6:
            named = [e for e in runs if e.run.startswith(spec)]
        if not named and not job_files:
            raise unknown_side(spec)
        if not named:
            variants = sorted({e.variant for e in runs if e.variant is not None})
            msg = (
                f"{spec!r}: no such variant, run or job file (variants: "
                f"{', '.join(variants) or 'none yet'})"
            )
            raise ConfigError(msg)
        recorded, limits = named[-1], covered(named)
        if scope is not None and recorded.units:
            roles = [u.role for u in recorded.units if u.role.startswith("filter:")]
            check_seen(scope, spec, [r.removeprefix("filter:") for r in roles])
        job = parse_job(recorded.job_text, f"{spec} (the job it recorded)")
    if limits is not None and limits.channels is not None:
        job = only_channels(job, limits.channels)
    units = JobUnits(job)
    notes: list[tuple[str, str]] = []
    ran = {u.role: u.provenance for u in recorded.units} if recorded is not None else {}
    now = {u.role: u.provenance for u in unit_uses(units)}
    for role, p in sorted(ran.items()):
        q = now.get(role)
        if q is not None and (p.unit_version, p.unit_digest) != (q.unit_version, q.unit_digest):
            notes.append((role,
                f"{spec}: {role} ({p.unit}) ran as version {p.unit_version}, code "
                f"{p.unit_digest[:12]}; compared as it ran (installed: version "
                f"{q.unit_version}, code {q.unit_digest[:12]})"
            ))  # fmt: skip
    channels = {}
    for c in units.channels:
        as_ran = replace(c, filter=as_recorded(c.filter, ran.get(f"filter:{c.name}")))
        channels[c.name] = Channels(frozenset({as_ran.key}))
    entries = [replace(e, unit=as_recorded(e.unit, ran.get(f"t2:{e.name}")))
               for e in units.entries]  # fmt: skip
    combiner = unit_identity(as_recorded(units.combiner, ran.get("combiner")))
    shapers = {k: as_recorded(u, ran.get(f"shaper:{k}")) for k, u in units.shapers.items()}
    side = Side(label=spec, channels=channels, combiner=combiner, entries=entries,
                shaping=shaping_of(runs, shapers), notes=tuple(notes),
                **_coverage(limits))  # fmt: skip
    return side, [text for _, text in notes]


def covered(runs: Sequence[RunStarted]) -> ReplayLimits | None:
    """Return what the runs of one variant (or one run) went over together: None
    (everything) if one of them had no limits, else the latest one's limits."""
    if any(run.limits is None for run in runs):
        return None
    return runs[-1].limits


def _coverage(limits: ReplayLimits | None) -> dict[str, Any]:
    """Return a side's limits and channels covered, from what its replay recorded."""
    if limits is None:
        return {}
    stocks = None if limits.stocks is None else frozenset(limits.stocks)
    channels = None if limits.channels is None else frozenset(limits.channels)
    return {"limits": Limits(limits.since, limits.until, stocks), "covers": channels}


def as_recorded(unit: U, ran: Provenance | None) -> U:
    """Return the unit as a run recorded it: its class and configuration under the
    version and code digest that run recorded, so that the ids of that run's results
    are found (it is never run). Without a record, or the same, the unit itself."""
    if unit is None or ran is None:
        return unit
    if (unit.version, unit.digest()) == (ran.unit_version, ran.unit_digest):
        return unit
    cls = type(unit)
    digest = ran.unit_digest
    attributes = {"name": cls.name, "version": ran.unit_version, "__module__": cls.__module__,
                  "digest": classmethod(lambda _: digest)}  # fmt: skip
    made: U = type(cls.__name__, (cls,), attributes)(unit.config)
    return made
