"""The local runner: one process runs a job's tiers in sequence over the ledger.

    RunStarted -> configurations registered -> T0 ingest of every source -> T1 combine
    -> T2 augment -> T3 react -> read model caught up -> RunFinished (with the summary)

Each tier is a projector with its own tracking position (named after the job hash), so
a run that stopped half-way is completed by the next one, and a second run over the
same data appends no new facts (only its own RunStarted and RunFinished).
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import distributions
from typing import Any

from ledger import Ledger, RunFinished, RunStarted, content_hash
from projections.readmodel import ReadModel, readmodel_url
from projections.t0 import Channel, Ingest
from projections.t1 import Combine
from projections.t2 import Augment, Retry, T2Task
from projections.t3 import Cut, React, Selection
from runners.job import Job
from units import Combiner, Filter, Reactor, Shaper, Source, T2Unit, Unit, load_unit

__all__ = ["LocalRunner", "Progress", "RunSummary"]

Progress = Callable[[str, int, int | None], None]  # (stage, done, total)


@dataclass
class RunSummary:
    """What a run did, for people (a table) and machines (JSON)."""

    run_id: str
    job_hash: str
    ledger: str
    alerts: int = 0
    unreadable: int = 0
    unreadable_reasons: dict[str, int] = field(default_factory=dict)
    datapoints: dict[str, int] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    stocks: int = 0
    states: dict[str, int] = field(default_factory=dict)
    results: dict[str, int] = field(default_factory=dict)
    reactions: dict[str, dict[str, int]] = field(default_factory=dict)
    appended: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-compatible data."""
        return dict(self.__dict__)


def build(cls_name: str, config: dict[str, Any]) -> Unit:
    """Return an instance of the unit registered under ``cls_name``."""
    return load_unit(cls_name)(config)


def package_versions() -> dict[str, str]:
    """Return the installed distributions and their versions."""
    found = {d.metadata["Name"]: d.version for d in distributions() if d.metadata["Name"]}
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


class LocalRunner:
    """Runs a job once, in this process, against a ledger."""

    def __init__(
        self,
        job: Job,
        job_text: str,
        ledger: Ledger,
        sources: Sequence[Source] = (),
        progress: Progress | None = None,
        redeliver: bool = False,
        read_model: bool = True,
        workers: int = 1,
    ) -> None:
        self.job = job
        self.job_text = job_text
        self.ledger = ledger
        self.sources = list(sources) or [self._unit(r.unit, r.config, Source) for r in job.sources]
        # Every unit is built once, here: the tiers and the tracking tag share them.
        self.filters: list[Filter | None] = [
            self._unit(c.filter.unit, c.filter.config, Filter) if c.filter else None
            for c in job.channels
        ]
        self.shapers = {s: self._unit(r.unit, r.config, Shaper) for s, r in job.shapers.items()}
        self.combiner = self._unit(job.combiner.unit, job.combiner.config, Combiner)
        self.t2_units = [self._unit(t.unit, t.config, T2Unit) for t in job.t2]
        self.reactors = [self._unit(t.unit, t.config, Reactor) for t in job.t3]
        self.progress = progress or (lambda stage, done, total: None)
        self.redeliver = redeliver
        self.read_model = read_model
        self.workers = workers
        self.run_id = uuid.uuid4().hex
        # Tracking positions are named after the job and every unit's name, version and
        # configuration: a new unit version or option starts its tiers from the beginning
        # (results that are still valid are reused by id, so that costs reads, not work).
        self.tag = content_hash(
            "tracking",
            {
                "job": job.hash,
                "units": sorted([u.name, u.version, u.config_hash] for u in self.units()),
            },
        )[:16]
        self.channels = frozenset(c.name for c in job.channels)

    @staticmethod
    def _unit(name: str, config: dict[str, Any], contract: type[Unit]) -> Any:
        unit = build(name, config)
        assert isinstance(unit, contract)
        return unit

    def units(self) -> list[Unit]:
        """Return every unit the job names (sources included), as built for this run."""
        found: list[Unit] = [*self.sources, *(f for f in self.filters if f is not None)]
        found += [*self.shapers.values(), self.combiner, *self.t2_units, *self.reactors]
        return found

    def run(self) -> RunSummary:
        """Run every tier and return the summary (also recorded in RunFinished)."""
        job, ledger = self.job, self.ledger
        summary = RunSummary(self.run_id, job.hash, ledger.url)
        head_before = ledger.head()
        ledger.append([self._started()])
        status = "failed"
        try:
            for unit in self.units():
                ledger.register_config(unit.name, unit.config.model_dump(mode="json"), self.run_id)
            self._t0(summary)
            self._t1(summary)
            self._t2(summary)
            self._t3(summary)
            if self.read_model:
                self._read_model()
            status = "ok"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            summary.appended = ledger.count(head_before + 1) + 1  # and RunFinished below
            finished = RunFinished(
                stream=f"run:{self.run_id}", run=self.run_id, status=status,
                summary=summary.as_dict(), run_id=self.run_id,
            )  # fmt: skip
            ledger.append([finished])
        return summary

    def _started(self) -> RunStarted:
        return RunStarted(
            stream=f"run:{self.run_id}", run=self.run_id, job_hash=self.job.hash,
            job_text=self.job_text, packages=package_versions(), host=socket.gethostname(),
            user=_user(), argv=tuple(sys.argv), run_id=self.run_id,
        )  # fmt: skip

    def _t0(self, summary: RunSummary) -> None:
        channels = [
            Channel(c.name, unit, c.autocomplete)
            for c, unit in zip(self.job.channels, self.filters, strict=True)
        ]
        ingest = Ingest(self.ledger, channels, self.shapers, self.run_id, workers=self.workers)
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            self.progress("T0 ingest", done, None)

        for source in self.sources:
            blobs = source.blobs() if self.workers > 1 else None
            ingest.run(source.packets(), source_label(source), tick, blobs)
        stats = ingest.stats
        summary.alerts, summary.unreadable = stats.alerts, stats.unreadable
        summary.unreadable_reasons = dict(stats.reasons)
        summary.datapoints = dict(stats.datapoints)
        summary.accepted = dict(stats.accepted)
        summary.rejected = dict(stats.rejected)
        summary.stocks = len(stats.stocks)

    def _t1(self, summary: RunSummary) -> None:
        combine = Combine(self.ledger, self.combiner, f"t1:{self.tag}", self.run_id, self.channels)
        summary.states = combine.run(
            lambda n, total: self.progress("T1 combine", n, total), workers=self.workers
        )

    def _retry(self) -> Retry:
        r = self.job.retry
        return Retry(r.max_attempts, r.backoff_s, r.factor)

    def _t2(self, summary: RunSummary) -> None:
        tasks = [
            T2Task(unit, frozenset(t.groups) if t.groups is not None else None)
            for t, unit in zip(self.job.t2, self.t2_units, strict=True)
        ]
        augment = Augment(
            self.ledger, tasks, f"t2:{self.tag}", self.run_id, self._retry(), channels=self.channels
        )
        counts: Counter[str] = augment.run(
            lambda n, total: self.progress("T2 augment", n, total), workers=self.workers
        )
        summary.results = dict(sorted(counts.items()))

    def _read_model(self) -> None:
        """Bring the read model (in the ledger's database) up to date with the ledger."""
        with ReadModel(readmodel_url(self.ledger.settings.ledger)) as model:
            model.create()
            model.catch_up(
                self.ledger, progress=lambda at, head: self.progress("read model", at, head)
            )

    def _t3(self, summary: RunSummary) -> None:
        for i, (spec, reactor) in enumerate(zip(self.job.t3, self.reactors, strict=True)):
            selection = Selection(
                channels=frozenset(spec.select.channels or self.channels),
                updated_since_last_run=spec.select.updated_since_last_run,
                cuts=tuple(Cut(c.unit, c.key, c.min, c.max) for c in spec.select.where),
            )
            react = React(
                self.ledger, reactor, selection, f"t3:{self.tag}:{i}", self.run_id,
                self._retry(), self.redeliver,
            )  # fmt: skip
            self.progress(f"T3 {spec.unit}", 0, None)
            summary.reactions[f"{i}:{spec.unit}"] = react.run()


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
