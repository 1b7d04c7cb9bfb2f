"""The local runner: one process catches a job's tiers up with the ledger, in sequence.

    RunStarted -> configurations registered
    -> for each source: T0 ingest in batches, the decisions catching up after each batch
    -> T1 combine -> T2 augment -> T3 react, then deliver (per reactor)
    -> read model caught up -> RunFinished (with the summary)

Every tier is a projector (``projections.projector``) with its own tracking position,
named after its units and those upstream of it; ingest keeps a position per source. A
run that stopped half-way is completed by the next one; a second run over the same
data appends no new facts (only its own RunStarted and RunFinished); and what the tiers
append depends only on the ledger's log and the job, not on batch sizes, worker
processes or how the input was split into runs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext

from skyledger.ledger import (
    ConfigError,
    Ledger,
    RunFinished,
    RunStarted,
)
from skyledger.projections.decide import Decide
from skyledger.projections.outbox import Deliver
from skyledger.projections.pool import Workers
from skyledger.projections.projector import CatchUp, Projector, catch_up_waiting
from skyledger.projections.queries import RunFacts, run_facts
from skyledger.projections.readmodel import ReadModel, readmodel_url
from skyledger.projections.reshape import Reshape
from skyledger.projections.stocks import Shaping
from skyledger.projections.t0 import Ingest, Verdicts
from skyledger.runners.job import Job
from skyledger.runners.summary import RunSummary
from skyledger.runners.tiers import JobUnits, build_tiers, register_configs, run_started
from skyledger.units import Source, Unit
from skyledger.units.contracts import StreamSource

__all__ = ["LocalRunner", "Progress", "RunSummary"]  # RunSummary: from runners.summary

Progress = Callable[[str, int, int | None], None]  # (stage, done, total)


class LocalRunner:
    """Runs a job once, in this process (and its worker processes), against a ledger."""

    def __init__(
        self,
        job: Job,
        job_text: str,
        ledger: Ledger,
        sources: Sequence[Source] = (),
        progress: Progress | None = None,
        read_model: bool = True,
        workers: int = 1,
        batch_size: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.job = job
        self.job_text = job_text
        self.ledger = ledger
        units = JobUnits(job, sources)  # every unit built once: tiers and names share them
        self.job_units = units
        self.sources = units.sources
        self.filters = units.filters
        self.shapers = units.shapers
        self.combiner = units.combiner
        self.entries = units.entries
        self.reactors = units.reactors
        self.channels = units.channels
        self.retry = units.retry
        self.progress = progress or (lambda stage, done, total: None)
        self.read_model = read_model
        self.workers = workers
        self.batch_size = batch_size
        self.sleep = sleep
        self.run_id = uuid.uuid4().hex
        self.variant: str | None = None  # what a replay records its output as
        self.shaping: Shaping | None = None  # a replay's own shapers (projections.stocks)
        self.reshape: Reshape | None = None  # and their projector, once built
        self.appended = 0  # events this run appended (others' may be appended meanwhile)
        self.max_alerts: int | None = None  # a stream source stops after so many messages
        self.until_ms: int | None = None  # or at the first written then (ms since the epoch)

    def units(self) -> list[Unit]:
        """Return every unit the job names (sources included), as built for this run."""
        return self.job_units.all()

    def check(self) -> None:
        """Raise ConfigError if the run could not read anything: no source at all, or a
        source whose input is missing (nothing is recorded then)."""
        if not self.sources:
            msg = "no source: give --source PATH (files, folders, archives), or sources in the job"
            raise ConfigError(msg)
        problems = [
            f"source {i} ({source.name}): {problem}"
            for i, source in enumerate(self.sources)
            for problem in source.problems()
        ]
        if problems:
            raise ConfigError("\n".join(problems))

    def run(self) -> RunSummary:
        """Check the sources, run every tier and return the summary (also recorded in
        RunFinished)."""
        self.check()
        ledger = self.ledger
        summary = RunSummary(self.run_id, self.job.hash, ledger.url)
        summary.changed_units = self._changed_units()
        summary.variant = self.variant
        started = self._started()
        self.appended += ledger.append([started]).appended
        status = "failed"
        try:
            self.appended += register_configs(ledger, self.units(), self.run_id)
            pool = Workers(self.workers) if self.workers > 1 else None
            with pool if pool is not None else nullcontext():
                self._tiers(summary, pool, (started.id,))
            if self.read_model:
                summary.facts(self._read_model())
            status = "failed units" if summary.failures else "ok"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            summary.status = status
            summary.appended = self.appended + 1  # and RunFinished below
            finished = RunFinished(
                stream=f"run:{self.run_id}", run=self.run_id, status=status,
                summary=summary.as_dict(), run_id=self.run_id,
            )  # fmt: skip
            ledger.append([finished])
        return summary

    def _tiers(self, summary: RunSummary, pool: Workers | None, cause: tuple[str, ...]) -> None:
        """Build the job's projectors and catch each up in turn."""
        verdicts: Verdicts = {}
        tiers = build_tiers(self.job_units, self.ledger, self.run_id, verdicts, pool,
                            self.batch_size, self.sleep, shaping=self.shaping)  # fmt: skip
        decide, combine, augment = tiers.decide, tiers.combine, tiers.augment
        self.reshape = tiers.reshape
        self._t0(summary, decide, verdicts, pool, cause)
        reshaped = [tiers.reshape] if tiers.reshape is not None else []
        made = self._catch_up("T1 combine", combine, decide, *reshaped)
        summary.states = {"alerts": combine.counts["alerts"], "new": made.stored,
                          "made_before": made.produced - made.stored}  # fmt: skip
        self._catch_up("T2 augment", augment, decide)
        for (entry, outcome), n in sorted(augment.counts.items()):
            summary.results.setdefault(entry, {})[outcome] = n
        summary.failures += [
            {"tier": "T2", "unit": entry, "stock": stock, "error": error}
            for entry, stock, error in augment.failures
        ]
        for i, (spec, react, deliver) in enumerate(
            zip(self.job.t3, tiers.react, tiers.deliver, strict=True)
        ):
            intended = self._catch_up(f"T3 {spec.unit}", react, decide, augment)
            self._deliver(f"T3 {spec.unit} delivery", deliver)
            counts = dict(react.counts) | {
                "intended": intended.stored,
                "intended_before": intended.produced - intended.stored,
            }
            delivered = {k.replace(" ", "_"): n for k, n in deliver.counts.items()}
            summary.reactions.append({"reactor": spec.unit, "index": i} | counts | delivered)
            summary.failures += [
                {"tier": "T3", "unit": spec.unit, "stock": stock or "", "target": target,
                 "error": error}
                for stock, target, error in deliver.failures
            ]  # fmt: skip

    def _deliver(self, stage: str, deliver: Deliver) -> None:
        """Deliver what a reactor intended (a replay does only if asked to)."""
        self._catch_up(stage, deliver)
        self.appended += deliver.appended

    def _limited(self, projector: Projector) -> Projector:
        """Return the projector as this run drives it (a replay may limit it)."""
        return projector

    def _catch_up(self, stage: str, projector: Projector, *upstream: Projector) -> CatchUp:
        """Catch one projector up, with a progress bar, after its upstream projectors
        (they record each position as the input they consumed, so their own output and
        what later tiers appended lie beyond it until they pass over it again)."""
        for before in upstream:
            self._drive(before)
        start = self.ledger.tracked(self._limited(projector).name)
        self.progress(stage, 0, None)

        def tick(at: int, bound: int) -> None:
            self.progress(stage, at - start, bound - start)

        return self._drive(projector, tick)

    def _drive(
        self, projector: Projector, progress: Callable[[int, int], None] | None = None
    ) -> CatchUp:
        """Catch a projector up, counting what it appended."""
        done = catch_up_waiting(self.ledger, self._limited(projector), self.sleep,
                                progress=progress)  # fmt: skip
        self.appended += done.stored
        return done

    def _t0(
        self,
        summary: RunSummary,
        decide: Decide,
        verdicts: Verdicts,
        pool: Workers | None,
        cause: tuple[str, ...],
    ) -> None:
        ingest = Ingest(self.ledger, self.shapers, self.filters, self.run_id, verdicts, cause,
                        self.batch_size or 5000, pool)  # fmt: skip
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            self.progress("T0 ingest", done, None)

        def decisions() -> None:
            self._drive(decide)

        for source in self.sources:
            if isinstance(source, StreamSource):
                ingest.run_stream(source, source.label(), decisions, tick,
                                  max_alerts=self.max_alerts, until_ms=self.until_ms)  # fmt: skip
            else:
                ingest.run(source, source_label(source), decisions, tick)
            decisions()
            verdicts.clear()  # what is left was read again: its alerts were decided before
        self._catch_up("T0 decisions", decide)  # alerts other runs or jobs received
        summary.ingested(ingest.stats)
        self.appended += ingest.stats.appended
        names = [c.name for c in decide.channels]
        summary.decided(names, [c.filter for c in decide.channels], decide.stats)

    def _changed_units(self) -> list[dict[str, str]]:
        """Return the job's units whose code differs from what earlier runs recorded
        under the same name and version (their results are computed again)."""
        seen: dict[tuple[str, str], set[str]] = {}
        for event in self.ledger.read(types=[RunStarted]):
            if isinstance(event, RunStarted):
                for use in event.units:
                    u = use.provenance
                    seen.setdefault((u.unit, u.unit_version), set()).add(u.unit_digest)
        changed = []
        for unit in self.units():
            digests = seen.get((unit.name, unit.version), set())
            if digests and unit.digest() not in digests:
                before = ", ".join(sorted(digests))
                changed.append({"unit": unit.name, "version": unit.version,
                                "digest": unit.digest(), "before": before})  # fmt: skip
        return changed

    def _started(self) -> RunStarted:
        return run_started(self.job, self.job_text, self.job_units, self.run_id, self.variant)

    def _read_model(self) -> RunFacts:
        """Bring the read model (in the ledger's database) up to date with the ledger, and
        return what this run added, from it."""
        with ReadModel(readmodel_url(self.ledger.settings.ledger)) as model:
            model.create()
            model.catch_up(
                self.ledger, progress=lambda at, head: self.progress("read model", at, head)
            )
            return run_facts(model, self.run_id)


def source_label(source: Source) -> str:
    """Return a short description of a source for AlertReceived.source."""
    paths = getattr(source.config, "paths", None)
    if isinstance(paths, Iterable) and not isinstance(paths, str):
        return f"{source.name}:{','.join(str(p) for p in paths)}"
    return source.name
