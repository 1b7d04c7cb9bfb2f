"""What the pages show around the listings: the channels a caller reads and their sizes,
the values a channel's results can be ranked by, the variants each unit configuration
ran in, a caller's stocks by id prefix, and a stock's received alerts. Stocks carrying
data of a survey programme the caller may not see are not counted nor found
(:mod:`projections.rights`)."""

from __future__ import annotations

from collections import defaultdict

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select

from skyledger.projections import models as m
from skyledger.projections.paging import MAX_POSITION
from skyledger.projections.queries import Source, reading, rows_of
from skyledger.projections.rights import programmes_allow
from skyledger.projections.scope import Scope

__all__ = [
    "AlertSeen",
    "ChannelSummary",
    "alerts_of",
    "channels_of",
    "rank_options",
    "stocks_starting",
    "variant_choices",
    "variants_by_key",
]

UnitKey = tuple[str, str, str, str]


class ChannelSummary(BaseModel):
    """A channel: how many stocks it follows and where it last accepted an alert."""

    model_config = ConfigDict(frozen=True)

    channel: str
    stocks: int
    last_position: int


class AlertSeen(BaseModel):
    """A readable alert of a stock: its packet's digest and where it is in the ledger."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    digest: str
    alert_id: str | None
    position: int


def channels_of(source: Source, scope: Scope) -> list[ChannelSummary]:
    """Return the channels a scope reads that follow any stock, by name."""
    table = m.StockChannel.__table__
    query = select(table.c.channel, func.count(), func.max(table.c.last_accepted_position))
    if scope.channels is not None:
        query = query.where(table.c.channel.in_(sorted(scope.channels)))
    query = query.where(programmes_allow(table.c.stock, MAX_POSITION, scope.programids))
    with reading(source) as conn:
        rows = conn.execute(query.group_by(table.c.channel).order_by(table.c.channel)).all()
    return [ChannelSummary(channel=c, stocks=n, last_position=p or 0) for c, n, p in rows]


def rank_options(source: Source, channel: str) -> list[tuple[str, str]]:
    """Return the (unit, path) pairs a channel's stocks are ranked by in the read model."""
    table = m.Rank.__table__
    query = (
        select(table.c.unit, table.c.path)
        .where(table.c.channel == channel)
        .distinct()
        .order_by(table.c.unit, table.c.path)
    )
    with reading(source) as conn:
        return [(str(u), str(p)) for u, p in conn.execute(query)]


def variants_by_key(source: Source) -> dict[UnitKey, list[str]]:
    """Return, for each T2 unit configuration the runs name, the variants that ran it
    (a run that is not a replay's: its job's name)."""
    runs = m.Run.__table__
    found: dict[UnitKey, set[str]] = defaultdict(set)
    with reading(source) as conn:
        for units, variant, job in conn.execute(
            select(runs.c.units, runs.c.variant, runs.c.job_name)
        ):
            for u in units or ():
                if str(u.get("role", "")).startswith("t2:"):
                    key = (u["unit"], u["unit_version"], u["unit_digest"], u["config"])
                    found[key].add(variant or f"{job or 'run'} (as run)")
    return {k: sorted(v) for k, v in found.items()}


def stocks_starting(source: Source, prefix: str, scope: Scope, limit: int = 20) -> list[str]:
    """Return the stocks a scope sees whose id starts with ``prefix`` (up to ``limit``)."""
    if scope.channels is None:
        table = m.Stock.__table__
        query = select(table.c.stock).where(table.c.stock.startswith(prefix, autoescape=True))
    else:
        table = m.StockChannel.__table__
        query = select(table.c.stock).where(
            table.c.stock.startswith(prefix, autoescape=True),
            table.c.channel.in_(sorted(scope.channels)),
        )
    query = query.where(programmes_allow(table.c.stock, MAX_POSITION, scope.programids))
    with reading(source) as conn:
        query = query.distinct().order_by(table.c.stock).limit(limit)
        return [str(s) for s in conn.execute(query).scalars()]


def alerts_of(
    source: Source, stock: str, limit: int = 20, event_id: str | None = None
) -> list[AlertSeen]:
    """Return a stock's readable alerts (or the one with this event id), latest first."""
    table = m.Alert.__table__
    query = (
        select(table.c.event_id, table.c.digest, table.c.alert_id, table.c.position)
        .where(table.c.stock == stock, table.c.error.is_(None))
        .order_by(table.c.position.desc())
        .limit(limit)
    )
    if event_id is not None:
        query = query.where(table.c.event_id == event_id)
    with reading(source) as conn:
        return [AlertSeen(**r) for r in rows_of(conn, query)]


def variant_choices(source: Source, scope: Scope) -> list[tuple[str, str]]:
    """Return what can be compared, as (what ``side_of`` takes, a label): each variant by
    name, then each run that is not a replay by id, latest first; only those following a
    channel the scope sees."""
    runs = m.Run.__table__
    query = select(runs.c.run_id, runs.c.variant, runs.c.job_name, runs.c.started,
                   runs.c.units).order_by(runs.c.start_position.desc().nulls_last())  # fmt: skip
    variants: dict[str, str] = {}
    plain: list[tuple[str, str]] = []
    with reading(source) as conn:
        for run_id, variant, job, started, units in conn.execute(query):
            channels = {str(u.get("role", ""))[7:] for u in units or ()
                        if str(u.get("role", "")).startswith("filter:")}  # fmt: skip
            if scope.channels is not None and not channels & scope.channels:
                continue
            when = started.strftime("%Y-%m-%d %H:%M") if started else "?"
            if variant is not None:
                variants.setdefault(variant, f"variant {variant} ({job or 'job'})")
            else:
                plain.append((run_id, f"run {run_id[:12]} of {job or 'a job'}, {when}"))
    return sorted(variants.items()) + plain
