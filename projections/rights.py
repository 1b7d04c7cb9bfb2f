"""Survey data rights (ZTF ``programid``) in SQL: which stocks a scope may see as of a
position.

A ZTF datapoint carries the programme it was taken for (1: public data, 2: the ZTF
partnership, 3: Caltech); a channel's policy says which programmes its readers may see
(:attr:`projections.scope.Scope.programids`). The read model records, per stock, each
programme its datapoints carry and the position of the first such datapoint
(``rm_stock_programids``). A caller limited to some programmes sees a stock only while
every programme its datapoints carry is one of those: from the position a datapoint of
another programme joins a stock, the stock, and all that is derived from it (its row,
counts and position on the sky, its states, results, reactions, journal and lineage),
is hidden from that caller, as if it did not exist. Datapoints without a ``programid``
(other surveys) are everyone's.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, exists, literal, select, true

from skyledger.projections import models as m
from skyledger.projections.queries import Source, reading

__all__ = ["hidden_stocks", "programmes_allow"]


def programmes_allow(
    stock: Any, at: Any, programids: Collection[int] | None
) -> ColumnElement[bool]:
    """Return 'the stock (a column or value) carried only these programmes at ``at``'
    (always true for ``programids`` None: every programme)."""
    if programids is None:
        return true()
    p = m.StockProgramme.__table__
    return ~exists(select(literal(1)).where(
        p.c.stock == stock, p.c.programid.not_in(sorted(programids)), p.c.first_position <= at
    ))  # fmt: skip


def hidden_stocks(
    source: Source, stocks: Sequence[str], programids: Collection[int] | None, at: int | None
) -> set[str]:
    """Return those of the stocks that carry a programme not in ``programids`` (by
    position ``at``, if given)."""
    if programids is None or not stocks:
        return set()
    p = m.StockProgramme.__table__
    query = select(p.c.stock).where(p.c.stock.in_(sorted(set(stocks))),
                                    p.c.programid.not_in(sorted(programids)))  # fmt: skip
    if at is not None:
        query = query.where(p.c.first_position <= at)
    with reading(source) as conn:
        return set(conn.execute(query).scalars())
