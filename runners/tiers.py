"""A job's units, built once, and its tiers as projectors: what the local run and the
live workers both drive.

:class:`JobUnits` builds every unit a job names (with its configuration checked by the
unit). :func:`build_tiers` makes the projectors of T0's decisions, T1, T2 and, per T3
entry, the reactor and its delivery, each named after its units and those upstream of
it, so any process that builds the same job drives the same tracking positions.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import distributions
from typing import Any

from skyledger.ledger import ConfigurationRegistered, Ledger, ReplayLimits, RunStarted, UnitUse
from skyledger.projections.decide import Channel, Decide
from skyledger.projections.identity import provenance, unit_identity
from skyledger.projections.outbox import Deliver
from skyledger.projections.pool import Workers
from skyledger.projections.projector import Projector
from skyledger.projections.reshape import Reshape
from skyledger.projections.retry import Retry
from skyledger.projections.stocks import Shaping
from skyledger.projections.t0 import Verdicts
from skyledger.projections.t1 import Combine
from skyledger.projections.t2 import Augment, T2Entry
from skyledger.projections.t3 import Cut, React, Selection
from skyledger.runners.job import Job
from skyledger.units import Combiner, Filter, Reactor, Shaper, Source, T2Unit, Unit, load_unit

__all__ = [
    "TIERS",
    "JobUnits",
    "Tiers",
    "build",
    "build_tiers",
    "package_versions",
    "register_configs",
    "run_started",
    "unit_uses",
]

TIERS = ("t0", "t1", "t2", "t3")


def build(cls_name: str, config: dict[str, Any]) -> Unit:
    """Return an instance of the unit registered under ``cls_name``."""
    return load_unit(cls_name)(config)


def _unit(name: str, config: dict[str, Any], contract: type[Unit]) -> Any:
    unit = build(name, config)
    if not isinstance(unit, contract):
        msg = f"{name!r} is not a {contract.__name__}"
        raise TypeError(msg)
    return unit


class JobUnits:
    """Every unit a job names, built once: the tiers and their tracking names share them."""

    def __init__(self, job: Job, sources: Sequence[Source] = ()) -> None:
        self.job = job
        self.sources = list(sources) or [_unit(r.unit, r.config, Source) for r in job.sources]
        self.filters: list[Filter | None] = [
            _unit(c.filter.unit, c.filter.config, Filter) if c.filter else None
            for c in job.channels
        ]
        self.shapers = {s: _unit(r.unit, r.config, Shaper) for s, r in job.shapers.items()}
        self.combiner: Combiner = _unit(job.combiner.unit, job.combiner.config, Combiner)
        self.entries = [
            T2Entry(spec.entry, _unit(spec.unit, spec.config, T2Unit),
                    frozenset(spec.groups) if spec.groups is not None else None, spec.depends)
            for spec in job.t2
        ]  # fmt: skip
        self.reactors: list[Reactor] = [_unit(t.unit, t.config, Reactor) for t in job.t3]
        self.channels = [
            Channel(c.name, unit, c.autocomplete)
            for c, unit in zip(job.channels, self.filters, strict=True)
        ]
        r = job.retry
        self.retry = Retry(r.max_attempts, r.backoff_s, r.factor, r.lease_s)

    def all(self) -> list[Unit]:
        """Return every unit the job names (sources included)."""
        found: list[Unit] = [*self.sources, *(f for f in self.filters if f is not None)]
        found += [*self.shapers.values(), self.combiner, *(e.unit for e in self.entries)]
        return found + list(self.reactors)


@dataclass
class Tiers:
    """A job's projectors: decisions (T0), combine (T1), augment (T2), and per T3 entry
    its reactor and delivery."""

    decide: Decide
    combine: Combine
    augment: Augment
    react: list[React] = field(default_factory=list)
    deliver: list[Deliver] = field(default_factory=list)
    reshape: Reshape | None = None  # a replay's own shapers, over the stored packets

    def of(self, tier: str) -> list[Projector]:
        """Return the projectors of a tier (``t0`` is the decisions; ingest is apart)."""
        found: dict[str, list[Projector]] = {
            "t0": [self.decide],
            "t1": [self.combine],
            "t2": [self.augment],
            "t3": [*self.react, *self.deliver],
        }
        if tier not in found:
            raise ValueError(f"unknown tier {tier!r}: one of {', '.join(TIERS)}")
        return found[tier]


def register_configs(ledger: Ledger, units: Sequence[Unit], run_id: str) -> int:
    """Record the configuration of each unit (once per configuration: content-addressed);
    return how many were new to the ledger."""
    configs = [
        ConfigurationRegistered(
            stream=f"config:{unit.config_hash}",
            config_hash=unit.config_hash,
            unit=unit.name,
            config=unit.config.model_dump(mode="json"),
            run_id=run_id,
        )
        for unit in units
    ]
    return ledger.append(configs).appended


def build_tiers(
    units: JobUnits,
    ledger: Ledger,
    run_id: str,
    verdicts: Verdicts | None = None,
    pool: Workers | None = None,
    batch_size: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    defer: bool = False,
    shaping: Shaping | None = None,
) -> Tiers:
    """Return the projectors of a job's tiers, over a ledger, for one run (or worker);
    with ``defer``, T2 puts a state off until its retry is due instead of sleeping; with
    a ``shaping``, the job's shapers for its surveys shape the stored packets again
    (a replay's) and its tiers read those datapoints."""
    size = batch_size or 2000
    decide = Decide(ledger, units.channels, run_id, verdicts, pool, size)
    mine = decide.mine
    reshape = Reshape(ledger, units.shapers, shaping, run_id) if shaping else None
    combine = Combine(ledger, units.combiner, mine, run_id, decide.name, pool, size, shaping,
                      reshape.name if reshape else "")  # fmt: skip
    combiner = unit_identity(units.combiner)
    augment = Augment(
        ledger, units.entries, combiner, mine, run_id, units.retry, decide.name, combine.name,
        pool, size, sleep, defer, shaping=shaping,
    )  # fmt: skip
    tiers = Tiers(decide, combine, augment, reshape=reshape)
    for spec, reactor in zip(units.job.t3, units.reactors, strict=True):
        selection = Selection(
            channels=frozenset(spec.select.channels) if spec.select.channels else None,
            cuts=tuple(Cut(c.unit, c.key, c.min, c.max) for c in spec.select.where),
            every_stock=not spec.select.updated_since_last_run,
        )
        react = React(ledger, reactor, units.entries, combiner, mine, selection, run_id,
                      decide.name, combine.name, augment.name, size, shaping)  # fmt: skip
        tiers.react.append(react)
        tiers.deliver.append(Deliver(ledger, reactor, run_id, units.retry, react.name))
    return tiers


def package_versions() -> dict[str, str]:
    """Return the installed distributions and their versions."""
    found = {d.metadata["Name"]: d.version for d in distributions() if d.metadata["Name"]}
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def unit_uses(units: JobUnits) -> list[UnitUse]:
    """Return every unit of a job with its role in it."""
    uses = [UnitUse(role="source", provenance=provenance(s)) for s in units.sources]
    uses += [UnitUse(role=f"shaper:{survey}", provenance=provenance(s))
             for survey, s in sorted(units.shapers.items())]  # fmt: skip
    uses += [UnitUse(role=f"filter:{c.name}", provenance=provenance(c.filter))
             for c in units.channels if c.filter is not None]  # fmt: skip
    uses.append(UnitUse(role="combiner", provenance=provenance(units.combiner)))
    uses += [UnitUse(role=f"t2:{e.name}", provenance=provenance(e.unit)) for e in units.entries]
    uses += [UnitUse(role=f"t3:{i}", provenance=provenance(r))
             for i, r in enumerate(units.reactors)]  # fmt: skip
    return uses


def run_started(
    job: Job,
    job_text: str,
    units: JobUnits,
    run_id: str,
    variant: str | None = None,
    limits: ReplayLimits | None = None,
) -> RunStarted:
    """Return the record of a run (or a live worker, or a replay as ``variant``, with
    its ``limits``) starting: the job, its units, where and by whom, with which packages."""
    return RunStarted(
        stream=f"run:{run_id}", run=run_id, job_hash=job.hash, job_text=job_text,
        packages=package_versions(), host=socket.gethostname(), user=_user(),
        argv=tuple(sys.argv), run_id=run_id, units=tuple(unit_uses(units)), variant=variant,
        limits=limits,
    )  # fmt: skip


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")
