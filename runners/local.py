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

import getpass
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from importlib.metadata import distributions
from typing import Any

from ledger import (
    ConfigError,
    ConfigurationRegistered,
    Ledger,
    RunFinished,
    RunStarted,
    UnitUse,
)
from projections.decide import Channel, Decide
from projections.identity import provenance, unit_identity
from projections.outbox import Deliver
from projections.pool import Workers
from projections.projector import CatchUp, Projector, catch_up
from projections.queries import RunFacts, run_facts
from projections.readmodel import ReadModel, readmodel_url
from projections.retry import Retry
from projections.t0 import Ingest, Verdicts
from projections.t1 import Combine
from projections.t2 import Augment, T2Entry
from projections.t3 import Cut, React, Selection
from runners.job import Job
from runners.summary import RunSummary
from units import Combiner, Filter, Reactor, Shaper, Source, T2Unit, Unit, load_unit

__all__ = ["LocalRunner", "Progress", "RunSummary"]  # RunSummary: from runners.summary

Progress = Callable[[str, int, int | None], None]  # (stage, done, total)


def build(cls_name: str, config: dict[str, Any]) -> Unit:
    """Return an instance of the unit registered under ``cls_name``."""
    return load_unit(cls_name)(config)


def package_versions() -> dict[str, str]:
    """Return the installed distributions and their versions."""
    found = {d.metadata["Name"]: d.version for d in distributions() if d.metadata["Name"]}
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


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
        self.sources = list(sources) or [self._unit(r.unit, r.config, Source) for r in job.sources]
        # Every unit is built once, here: the tiers and the tracking names share them.
        self.filters: list[Filter | None] = [
            self._unit(c.filter.unit, c.filter.config, Filter) if c.filter else None
            for c in job.channels
        ]
        self.shapers = {s: self._unit(r.unit, r.config, Shaper) for s, r in job.shapers.items()}
        self.combiner = self._unit(job.combiner.unit, job.combiner.config, Combiner)
        self.entries = [
            T2Entry(spec.entry, self._unit(spec.unit, spec.config, T2Unit),
                    frozenset(spec.groups) if spec.groups is not None else None, spec.depends)
            for spec in job.t2
        ]  # fmt: skip
        self.reactors = [self._unit(t.unit, t.config, Reactor) for t in job.t3]
        self.progress = progress or (lambda stage, done, total: None)
        self.read_model = read_model
        self.workers = workers
        self.batch_size = batch_size
        self.sleep = sleep
        self.run_id = uuid.uuid4().hex
        self.appended = 0  # events this run appended (others' may be appended meanwhile)
        self.channels = [
            Channel(c.name, unit, c.autocomplete)
            for c, unit in zip(job.channels, self.filters, strict=True)
        ]
        r = job.retry
        self.retry = Retry(r.max_attempts, r.backoff_s, r.factor, r.lease_s)

    @staticmethod
    def _unit(name: str, config: dict[str, Any], contract: type[Unit]) -> Any:
        unit = build(name, config)
        if not isinstance(unit, contract):
            msg = f"{name!r} is not a {contract.__name__}"
            raise TypeError(msg)
        return unit

    def units(self) -> list[Unit]:
        """Return every unit the job names (sources included), as built for this run."""
        found: list[Unit] = [*self.sources, *(f for f in self.filters if f is not None)]
        found += [*self.shapers.values(), self.combiner, *(e.unit for e in self.entries)]
        return found + list(self.reactors)

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
        started = self._started()
        self.appended += ledger.append([started]).appended
        status = "failed"
        try:
            configs = []
            for unit in self.units():
                config = unit.config.model_dump(mode="json")
                configs.append(ConfigurationRegistered(
                    stream=f"config:{unit.config_hash}", config_hash=unit.config_hash,
                    unit=unit.name, config=config, run_id=self.run_id,
                ))  # fmt: skip
            self.appended += ledger.append(configs).appended
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
        ledger, run_id, size = self.ledger, self.run_id, self.batch_size or 2000
        verdicts: Verdicts = {}
        decide = Decide(ledger, self.channels, run_id, verdicts, pool, size)
        mine = decide.mine
        combine = Combine(ledger, self.combiner, mine, run_id, decide.name, pool, size)
        combiner = unit_identity(self.combiner)
        augment = Augment(
            ledger, self.entries, combiner, mine, run_id, self.retry, decide.name, combine.name,
            pool, size, self.sleep,
        )  # fmt: skip
        self._t0(summary, decide, verdicts, pool, cause)
        made = self._catch_up("T1 combine", combine, decide)
        summary.states = {"alerts": combine.counts["alerts"], "new": made.stored,
                          "made_before": made.produced - made.stored}  # fmt: skip
        self._catch_up("T2 augment", augment, decide)
        for (entry, outcome), n in sorted(augment.counts.items()):
            summary.results.setdefault(entry, {})[outcome] = n
        summary.failures += [
            {"tier": "T2", "unit": entry, "stock": stock, "error": error}
            for entry, stock, error in augment.failures
        ]
        for i, (spec, reactor) in enumerate(zip(self.job.t3, self.reactors, strict=True)):
            selection = Selection(
                channels=frozenset(spec.select.channels) if spec.select.channels else None,
                cuts=tuple(Cut(c.unit, c.key, c.min, c.max) for c in spec.select.where),
                every_stock=not spec.select.updated_since_last_run,
            )
            react = React(ledger, reactor, self.entries, combiner, mine, selection, run_id,
                          decide.name, combine.name, augment.name, size)  # fmt: skip
            deliver = Deliver(ledger, reactor, run_id, self.retry, react.name, self.sleep)
            intended = self._catch_up(f"T3 {spec.unit}", react, decide, augment)
            self._catch_up(f"T3 {spec.unit} delivery", deliver)
            self.appended += deliver.appended
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

    def _catch_up(self, stage: str, projector: Projector, *upstream: Projector) -> CatchUp:
        """Catch one projector up, with a progress bar, after its upstream projectors
        (they record each position as the input they consumed, so their own output and
        what later tiers appended lie beyond it until they pass over it again)."""
        for before in upstream:
            self._drive(before)
        start = self.ledger.tracked(projector.name)
        self.progress(stage, 0, None)

        def tick(at: int, bound: int) -> None:
            self.progress(stage, at - start, bound - start)

        return self._drive(projector, tick)

    def _drive(
        self, projector: Projector, progress: Callable[[int, int], None] | None = None
    ) -> CatchUp:
        """Catch a projector up, counting what it appended."""
        done = catch_up(self.ledger, projector, progress=progress)
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

    def uses(self) -> list[UnitUse]:
        """Return every unit of the job with its role in it."""
        uses = [UnitUse(role="source", provenance=provenance(s)) for s in self.sources]
        uses += [UnitUse(role=f"shaper:{survey}", provenance=provenance(s))
                 for survey, s in sorted(self.shapers.items())]  # fmt: skip
        uses += [UnitUse(role=f"filter:{c.name}", provenance=provenance(c.filter))
                 for c in self.channels if c.filter is not None]  # fmt: skip
        uses.append(UnitUse(role="combiner", provenance=provenance(self.combiner)))
        uses += [UnitUse(role=f"t2:{e.name}", provenance=provenance(e.unit)) for e in self.entries]
        uses += [UnitUse(role=f"t3:{i}", provenance=provenance(r))
                 for i, r in enumerate(self.reactors)]  # fmt: skip
        return uses

    def _started(self) -> RunStarted:
        return RunStarted(
            stream=f"run:{self.run_id}", run=self.run_id, job_hash=self.job.hash,
            job_text=self.job_text, packages=package_versions(), host=socket.gethostname(),
            user=_user(), argv=tuple(sys.argv), run_id=self.run_id, units=tuple(self.uses()),
        )  # fmt: skip

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


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")
