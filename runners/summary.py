"""What a run did, as facts, for people (a table) and machines (JSON, nested objects).

Facts, not work: alerts read, and of them how many were new to the ledger and how many
it held already; datapoints new to their stock and new bodies of datapoints it had (not
the same detections counted again in each alert's history); states, results and
reactions new or made before; every failure by unit and stock with its error. What the
ledger gained is taken from the read model, which tells a datapoint new to its stock
from a new body of one it had; a run without the read model gives the counts the tiers
made only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the command line imports this module on every start: keep it light
    from skyledger.projections.decide import DecideStats
    from skyledger.projections.queries import RunFacts
    from skyledger.projections.t0 import IngestStats
    from skyledger.units import Filter

__all__ = ["INPUTS_SHOWN", "RunSummary"]

INPUTS_SHOWN = 20
"""Unreadable inputs listed by name in a summary (the rest are counted)."""


@dataclass
class RunSummary:
    """What a run did: see the module docstring; ``as_dict`` gives the JSON."""

    run_id: str
    job_hash: str
    ledger: str
    status: str = "running"
    alerts: dict[str, int | None] = field(
        default_factory=lambda: {"read": 0, "new": None, "already_in_ledger": None}
    )
    unreadable: dict[str, Any] = field(
        default_factory=lambda: {"read": 0, "new": None, "reasons": {}, "inputs": []}
    )
    sources: list[dict[str, Any]] = field(default_factory=list)
    partitions: dict[str, int] = field(default_factory=dict)  # stream partition -> resumed at
    notes: list[str] = field(default_factory=list)
    datapoints: dict[str, dict[str, int]] = field(default_factory=dict)
    stocks: int = 0
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    results: dict[str, dict[str, int]] = field(default_factory=dict)
    reactions: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    changed_units: list[dict[str, str]] = field(default_factory=list)
    appended: int = 0
    variant: str | None = None  # a replay's: what it recorded its output as
    replay: dict[str, Any] | None = None  # a replay's limits, alerts gone over, delivery

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-compatible data."""
        return dict(self.__dict__)

    def ingested(self, stats: IngestStats) -> None:
        """Take what ingest read: alerts, unreadable inputs, sources and where they resumed."""
        from skyledger.projections.t0 import ITEM

        self.alerts["read"] = stats.alerts
        self.unreadable.update(
            read=stats.unreadable,
            reasons=dict(stats.reasons),
            inputs=stats.unreadable_inputs[:INPUTS_SHOWN],
        )
        if stats.unreadable > INPUTS_SHOWN:
            self.unreadable["inputs_not_shown"] = stats.unreadable - INPUTS_SHOWN
        self.stocks = len(stats.stocks)
        for label in dict.fromkeys([*stats.resumed, *stats.read]):  # resumed, maybe read none
            read, at = stats.read.get(label, 0), stats.resumed.get(label)
            resumed = None if at is None else {"item": at // ITEM, "record": at % ITEM}
            self.sources.append({"source": label, "read": read, "resumed_after": resumed})
        self.partitions = dict(stats.partitions)
        self.notes = list(dict.fromkeys(stats.notes))

    def decided(self, names: list[str], filters: list[Filter | None], stats: DecideStats) -> None:
        """Take the decisions per channel: acceptances, and rejections by code with what
        the code means (the filter's words for it, else one alert's reason)."""
        for name, unit in zip(names, filters, strict=True):
            rejected: dict[str, dict[str, Any]] = {}
            for (channel, code), n in sorted(stats.rejected.items(), key=str):
                if channel != name:
                    continue
                example = stats.reasons.get((channel, code), "")
                words = _meaning(unit, code) or f"for example: {example}"
                rejected[str(code)] = {"count": n, "reason": words, "example": example}
            self.decisions[name] = {"accepted": stats.accepted[name], "rejected": rejected}

    def facts(self, facts: RunFacts) -> None:
        """Take what the ledger gained, from the read model."""
        self.alerts["new"] = facts.alerts_new
        read = self.alerts["read"] or 0
        self.alerts["already_in_ledger"] = max(read - facts.alerts_new, 0)
        self.unreadable["new"] = facts.unreadable_new
        self.datapoints = facts.datapoints


def _meaning(unit: Filter | None, code: int | None) -> str:
    from skyledger.projections.t0 import FILTER_RAISED

    if code == FILTER_RAISED:
        return "the filter raised an error"
    if unit is None or code is None:
        return ""
    return unit.codes.get(code, "")
