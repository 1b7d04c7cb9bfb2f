"""Late datapoints: a state lacks a datapoint observed before its alert that reached the
ledger after it.

A combiner that cuts a state at its alert's time (``StateCombined.until``) holds what the
ledger knew then and was observed by then. A datapoint observed by that time can still
arrive later, in the history of a packet received after the alert (packets come out of
time order). The read model counts such datapoints in each state's ``late`` column: when
a state is folded, those already known that came after its alert; when a datapoint is
first folded, every cut state of its stock whose alert came before it and whose time it
does not pass. Both run in the read model's own transaction, so each is counted once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, select, update

from skyledger.projections import models as m
from skyledger.projections.models import table_of

__all__ = ["count_late", "mark_late"]

Row = dict[str, Any]
_CHUNK = 500


def count_late(conn: Connection, states: Sequence[Row]) -> None:
    """Set ``late`` in new state rows (before they are written) from the datapoints the
    read model holds of their stocks."""
    cut = [r for r in states if r.get("until") is not None and r.get("alert_position")]
    for row in states:
        row.setdefault("late", 0)
    if not cut:
        return
    table = table_of(m.Datapoint)
    stocks = sorted({r["stock"] for r in cut})
    since = min(r["alert_position"] for r in cut)
    found: dict[str, list[tuple[float, int, str | None]]] = {}
    for start in range(0, len(stocks), _CHUNK):
        columns = (table.c.stock, table.c.jd, table.c.first_position, table.c.first_alert)
        query = select(*columns).where(
            table.c.stock.in_(stocks[start : start + _CHUNK]),
            table.c.first_position > since,
            table.c.jd.is_not(None),
        )
        for stock, jd, first, alert in conn.execute(query):
            found.setdefault(stock, []).append((jd, first, alert))
    for row in cut:
        row["late"] = sum(
            1
            for jd, first, alert in found.get(row["stock"], ())
            if first > row["alert_position"] and alert != row["alert"] and jd <= row["until"]
        )


def mark_late(conn: Connection, fresh: Sequence[tuple[str, float, int, str | None]]) -> None:
    """Count in the stored states each datapoint new to the read model, given as (stock,
    jd, position, the alert that brought it), that came after a state's alert (in
    another alert's packet) and was observed by its time."""
    if not fresh:
        return
    table = table_of(m.State)
    stocks = sorted({stock for stock, *_ in fresh})
    latest: dict[str, float] = {}
    for start in range(0, len(stocks), _CHUNK):
        query = (
            select(table.c.stock, func.max(table.c.until))
            .where(table.c.stock.in_(stocks[start : start + _CHUNK]))
            .group_by(table.c.stock)
        )
        latest.update({stock: until for stock, until in conn.execute(query) if until is not None})
    late = Counter(f for f in fresh if f[0] in latest and f[1] <= latest[f[0]])
    for (stock, jd, position, alert), count in sorted(late.items(), key=str):
        conn.execute(
            update(table)
            .where(
                table.c.stock == stock,
                table.c.until >= jd,
                table.c.alert_position < position,
                table.c.alert.is_distinct_from(alert),
            )
            .values(late=table.c.late + count)
        )
