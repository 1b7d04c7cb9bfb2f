"""Lineage: why an event is in the ledger, down to the packet bytes (``skyledger why``).

Every derived event names the events it was made from (``causation``): a delivery
outcome its claim, a claim its intent, an intent the states and results it was made of,
a result its state and the results it depended on, a state its alert, the decisions
that made a channel follow it and the events that added its datapoints, and an alert
the run that received it. :func:`lineage` walks those links from one event, a level of
the tree per read, and returns each event once (a second path to it says so), with
what made it: unit, version, code digest and duration; the configurations and runs
(job hash and text, host, user, package versions) are given once, beside the tree, and
each alert's packet is looked up by its digest.

:func:`resolve` finds the event a user means by any of the ids they meet: an event id,
a result id, a reaction's idempotency key (its last outcome, else its intent), a packet
digest, or, through the read model, a state id, a datapoint id or a survey alert id.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from skyledger.ledger import (
    AlertReceived,
    DeliveryClaimed,
    Event,
    Ledger,
    Provenance,
    ReactionIntended,
    ReactionIssued,
    ResultDerived,
    ResultFailed,
    RunFinished,
    RunStarted,
)
from skyledger.projections.describe import describe

__all__ = [
    "ConfigUsed",
    "Lineage",
    "PacketKept",
    "RunUsed",
    "Step",
    "lineage",
    "resolve",
]

_EVENT_ID = re.compile(r"[0-9a-f]{32}")
Lookup = Callable[[str], list[str]]
"""Event ids the read model knows under another id (state, datapoint, survey alert)."""


class Made(BaseModel):
    """What made a derived event: the unit, its version and code, its configuration's
    hash (the configuration itself is in :attr:`Lineage.configs`) and its wall time."""

    unit: str
    version: str
    code_digest: str
    config: str
    duration_s: float


class Step(BaseModel):
    """One event of the lineage, with the steps it was made from."""

    id: str
    type: str
    stream: str
    position: int | None
    time: dt.datetime
    run: str | None
    what: str = Field(description="the event in words")
    made_by: Made | None = None
    fields: dict[str, Any] = Field(default_factory=dict, description="its own content")
    shown_above: bool = Field(default=False, description="a second path to a step shown")
    missing: bool = Field(default=False, description="named as a cause, not in the ledger")
    causes: list[Step] = Field(default_factory=list)


class ConfigUsed(BaseModel):
    """A configuration, in full, as registered (None: not in this ledger), and the units
    of the lineage that ran with it (equal values have one hash, whichever unit)."""

    units: list[str]
    config: dict[str, Any] | None


class RunUsed(BaseModel):
    """A run (or live worker) that recorded steps: the job, the software, the host."""

    run: str
    started: dt.datetime | None = None
    job_hash: str = ""
    job_text: str = ""
    host: str = ""
    user: str = ""
    argv: list[str] = Field(default_factory=list)
    packages: dict[str, str] = Field(default_factory=dict)
    status: str | None = Field(default=None, description="how it finished (None: not yet)")
    found: bool = Field(default=True, description="False: its RunStarted is not in the ledger")
    variant: str | None = Field(default=None, description="a replay's variant (None: a run)")


class PacketKept(BaseModel):
    """An alert's packet in the packet store."""

    digest: str
    size: int | None = Field(description="bytes kept (None: only the digest was kept)")


class Lineage(BaseModel):
    """The lineage of one event: the tree, and what it refers to once."""

    root: Step
    configs: dict[str, ConfigUsed] = Field(default_factory=dict)
    runs: dict[str, RunUsed] = Field(default_factory=dict)
    packets: dict[str, PacketKept] = Field(default_factory=dict)
    steps: int = Field(default=0, description="distinct events in the tree")
    also: list[str] = Field(
        default_factory=list, description="other events the id asked about names (shown: the first)"
    )


def resolve(
    ledger: Ledger, ident: str, lookup: Lookup | None = None, until: int | None = None
) -> list[Event]:
    """Return the events ``ident`` may name, most direct first (empty: none); with
    ``until``, only events at or before that position (a reaction's last outcome then)."""
    ident = ident.strip()

    def known(found: Mapping[str, Event]) -> dict[str, Event]:
        return {k: e for k, e in found.items() if until is None or (e.position or 0) <= until}

    direct = [
        *([ident] if _EVENT_ID.fullmatch(ident) else []),
        ResultDerived.id_for(result_id=ident),
        AlertReceived.id_for(digest=ident),
        ReactionIntended.id_for(idempotency_key=ident),
        RunStarted.id_for(run=ident),
    ]
    found = known(ledger.get_many(direct))
    events = [found[i] for i in direct if i in found]
    for e in list(events):
        if isinstance(e, ReactionIntended):  # a reaction: its last outcome says the most
            outcome = _last_outcome(ledger, e, until)
            if outcome is not None:
                events.insert(events.index(e), outcome)
    if not events:
        tries = [ResultFailed.id_for(result_id=ident, attempt=n) for n in range(1, 21)]
        failed = known(ledger.get_many(tries))
        events = sorted(failed.values(), key=lambda e: -(e.position or 0))[:1]
    if not events and lookup is not None:
        more = known(ledger.get_many(i for i in lookup(ident) if _EVENT_ID.fullmatch(i)))
        events = sorted(more.values(), key=lambda e: e.position or 0)
    return events


def _last_outcome(
    ledger: Ledger, intent: ReactionIntended, until: int | None = None
) -> Event | None:
    """Return the last delivery event of a reaction (outcome, or claim), if any (up to
    position ``until``, if given)."""
    last: Event | None = None
    for e in ledger.stream(f"reaction:{intent.idempotency_key}", until=until):
        if isinstance(e, ReactionIssued | DeliveryClaimed):
            last = e
    return last


def lineage(
    ledger: Ledger, event: Event, max_steps: int = 100_000, until: int | None = None
) -> Lineage:
    """Return the lineage of ``event``: every event it was made from, down to the
    alerts, their packets and runs (at most ``max_steps`` events: a limit for
    pathological ledgers; the tree says where it stopped). With ``until``, as the
    ledger stood at that position: the runs' outcomes recorded later are left out
    (an event's causes always come before it)."""
    known: dict[str, Event] = {event.id: event}
    frontier = list(event.causation)
    while frontier and len(known) < max_steps:  # a level of the tree per read
        wanted = [i for i in dict.fromkeys(frontier) if i not in known]
        found = ledger.get_many(wanted)
        known.update(found)
        frontier = [c for i in wanted if i in found for c in found[i].causation]
    done = Lineage(root=_step(event))
    shown: set[str] = set()
    _grow(done.root, event, known, shown)
    done.steps = len(shown)
    events = [known[i] for i in shown]
    done.configs = _configs(ledger, events)
    done.runs = _runs(ledger, events, until)
    done.packets = {
        e.digest: PacketKept(digest=e.digest, size=_size(ledger.packet(e.digest)))
        for e in events
        if isinstance(e, AlertReceived)
    }
    return done


def _grow(step: Step, event: Event, known: Mapping[str, Event], shown: set[str]) -> None:
    """Fill in a step's causes, depth first, each event once."""
    shown.add(event.id)
    stack: list[tuple[Step, Event]] = [(step, event)]
    while stack:
        parent, e = stack.pop()
        children: list[tuple[Step, Event]] = []
        for cause in e.causation:
            found = known.get(cause)
            if found is None:
                parent.causes.append(_missing(cause))
                continue
            child = _step(found)
            if found.id in shown:
                child.shown_above = True
                child.causes = []
            else:
                shown.add(found.id)
                children.append((child, found))
            parent.causes.append(child)
        stack.extend(reversed(children))


def _missing(event_id: str) -> Step:
    return Step(
        id=event_id, type="?", stream="", position=None, run=None, missing=True,
        time=dt.datetime.fromtimestamp(0, dt.UTC), what="named as a cause, not in this ledger",
    )  # fmt: skip


def _step(e: Event) -> Step:
    """Return an event as a step, without its causes."""
    provenance = getattr(e, "provenance", None)
    made = (
        Made(unit=provenance.unit, version=provenance.unit_version,
             code_digest=provenance.unit_digest, config=provenance.config,
             duration_s=provenance.duration_s)
        if isinstance(provenance, Provenance) else None
    )  # fmt: skip
    envelope = {"id", "stream", "time", "run_id", "causation", "position", "provenance"}
    if isinstance(e, RunStarted):  # the job and the software are in Lineage.runs
        envelope |= {"job_text", "packages", "units", "argv"}
    own = {k: v for k, v in e.model_dump(mode="json").items() if k not in envelope}
    return Step(
        id=e.id, type=type(e).__name__, stream=e.stream, position=e.position, time=e.time,
        run=e.run_id, what=describe(e), made_by=made, fields=own,
    )  # fmt: skip


def _configs(ledger: Ledger, events: Iterable[Event]) -> dict[str, ConfigUsed]:
    """Return the configuration of every unit that made one of the events."""
    units: dict[str, set[str]] = {}
    for e in events:
        provenance = getattr(e, "provenance", None)
        if isinstance(provenance, Provenance):
            units.setdefault(provenance.config, set()).add(provenance.unit)
    return {
        h: ConfigUsed(units=sorted(u), config=ledger.config(h)) for h, u in sorted(units.items())
    }


def _runs(ledger: Ledger, events: Iterable[Event], until: int | None) -> dict[str, RunUsed]:
    """Return the runs that recorded the events: job, software, host, how they ended
    (by position ``until``, if given)."""
    runs = sorted({e.run_id for e in events if e.run_id})
    ids = {RunStarted.id_for(run=r): r for r in runs} | {RunFinished.id_for(run=r): r for r in runs}
    found = ledger.get_many(ids)
    used = {r: RunUsed(run=r, found=False) for r in runs}
    for e in found.values():
        if isinstance(e, RunStarted):
            used[e.run] = RunUsed(
                run=e.run, started=e.time, job_hash=e.job_hash, job_text=e.job_text,
                host=e.host, user=e.user, argv=list(e.argv), packages=dict(e.packages),
                status=used[e.run].status, variant=e.variant,
            )  # fmt: skip
    for e in found.values():
        if isinstance(e, RunFinished) and (until is None or (e.position or 0) <= until):
            used[e.run].status = e.status
    return used


def _size(packet: bytes | None) -> int | None:
    return None if packet is None else len(packet)
