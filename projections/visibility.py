"""What of a stock a scope may see: its channels' states, results, reactions and decisions.

A state belongs to the channels that accepted the alert it was made at, a result to
the channels of the state it is about (or, about no state, to the channels following
its stock), a reaction to the channels whose selection it was made for. A caller sees
the datapoints and alerts of a stock one of its channels follows, if every datapoint of
the stock is of a survey programme its channels have rights to (ZTF ``programid``; see
:mod:`projections.rights`): else the stock is hidden, whole.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, true

from skyledger.ledger import Ledger
from skyledger.projections import models as m
from skyledger.projections.asof import stock_as_of
from skyledger.projections.lineage import Lineage, Step, lineage, resolve
from skyledger.projections.queries import (
    Source,
    StockRow,
    StockView,
    event_ids_of,
    reading,
    stock_rows,
    stock_view,
)
from skyledger.projections.rights import hidden_stocks
from skyledger.projections.scope import Scope

__all__ = ["scoped_lineage", "scoped_view", "visible_lineage", "visible_rows", "visible_stock"]


def scoped_view(source: Source, view: StockView, scope: Scope) -> StockView | None:
    """Return what a scope may see of a stock's view; None if none of its channels
    follows the stock (the operator's scope sees it all)."""
    if scope.channels is None and scope.programids is None:
        return view
    if not all(scope.may_see(d.body) for d in (*view.datapoints, *view.upper_limits)):
        return None  # of a programme the caller has no rights to: hidden, whole
    mine = scope.channels
    followers = [c for c in view.channels if mine is None or c.channel in mine]
    if not followers and mine is not None:
        return None
    names = {c.channel for c in followers}
    states = [s for s in view.states if names & set(s.channels)]
    with reading(source) as conn:
        table = m.StateChannel.__table__
        subjects = {r.subject for r in view.results}
        of_state: dict[str, set[str]] = {}
        query = select(table.c.state_id, table.c.channel).where(table.c.state_id.in_(subjects))
        for state_id, channel in conn.execute(query):
            of_state.setdefault(state_id, set()).add(channel)
    results = [r for r in view.results if r.subject not in of_state
               or of_state[r.subject] & names]  # fmt: skip
    reactions = [x for x in view.reactions if x.channels is not None and names & set(x.channels)]
    points = view.datapoints + view.upper_limits
    seen = names | {d.datapoint_id for d in points} | {s.state_id for s in states}
    seen |= {r.result_id for r in results} | {x.idempotency_key for x in reactions}
    journal = [j for j in view.journal if j.subject is None or j.subject in seen]
    return view.model_copy(update={
        "stock": view.stock.model_copy(update={"channels": tuple(sorted(names))}),
        "channels": tuple(followers),
        "states": tuple(s.model_copy(update={"channels": tuple(c for c in s.channels
                                                               if c in names)}) for s in states),
        "results": tuple(results),
        "reactions": tuple(reactions),
        "journal": tuple(journal),
    })  # fmt: skip


def scoped_lineage(
    source: Source, found: Lineage, scope: Scope, until: int | None = None
) -> Lineage | None:
    """Return what a scope may see of a lineage (as of position ``until``, if given):
    None if the event asked about is not its channels' or is of a stock it may not see
    (:mod:`projections.rights`); else the tree less the decisions, states, results and
    reactions of other channels, less every step of such stocks (and reactions about no
    one stock, for a caller limited to some programmes), and the runs without their job
    text (which names every channel)."""
    if scope.channels is None and scope.programids is None:
        return found
    with reading(source) as conn:
        check = _Checker(conn, scope, until)
        if not check.visible(found.root):
            return None
        root = check.pruned(found.root)
    runs = {k: r.model_copy(update={"job_text": "", "argv": []}) for k, r in found.runs.items()}
    return found.model_copy(update={"root": root, "runs": runs})


_STOCK_STEPS = ("AlertReceived", "DatapointAdded", "FilterDecided", "StateCombined",
                "ResultDerived", "ResultFailed")  # fmt: skip
_REACTION_STEPS = ("ReactionIntended", "DeliveryClaimed", "ReactionIssued")


class _Checker:
    """Whether steps of a lineage belong to some of the scope's channels and to stocks
    of the programmes it may see (cached by id)."""

    def __init__(self, conn: Any, scope: Scope, until: int | None) -> None:
        self.conn, self.scope, self.until = conn, scope, until
        self.names = None if scope.channels is None else sorted(scope.channels)
        self.stocks: dict[str, bool] = {}
        self.rights: dict[str, bool] = {}

    def _any(self, query: Any) -> bool:
        return self.conn.execute(query.limit(1)).first() is not None

    def _mine(self, column: Any) -> Any:
        return true() if self.names is None else column.in_(self.names)

    def follows(self, stock: str) -> bool:
        if stock not in self.stocks:
            c = m.StockChannel.__table__
            self.stocks[stock] = self._any(
                select(c.c.stock).where(c.c.stock == stock, self._mine(c.c.channel))
            )
        return self.stocks[stock]

    def allowed(self, stock: str | None) -> bool:
        """Return True if the scope may see a stock's programmes (None: no one stock)."""
        if self.scope.programids is None:
            return True
        if stock is None:
            return False
        if stock not in self.rights:
            hidden = hidden_stocks(self.conn, [stock], self.scope.programids, self.until)
            self.rights[stock] = not hidden
        return self.rights[stock]

    def state(self, state_id: str) -> bool | None:
        sc = m.StateChannel.__table__
        if not self._any(select(sc.c.state_id).where(sc.c.state_id == state_id)):
            return None  # not a state
        return self._any(
            select(sc.c.state_id).where(sc.c.state_id == state_id, self._mine(sc.c.channel))
        )

    def visible(self, step: Step) -> bool:
        if step.type in _STOCK_STEPS and not self.allowed(step.stream):
            return False
        fields = step.fields
        if step.type == "FilterDecided":
            return self.names is None or fields.get("channel") in self.names
        if step.type == "StateCombined":
            return bool(self.state(str(fields.get("state_id"))))
        if step.type in ("ResultDerived", "ResultFailed"):
            of_state = self.state(str(fields.get("subject")))
            return self.follows(step.stream) if of_state is None else of_state
        if step.type in _REACTION_STEPS:
            r = m.Reaction.__table__
            key = str(fields.get("idempotency_key"))
            query = select(r.c.channels, r.c.stock).where(r.c.idempotency_key == key)
            row = self.conn.execute(query).first()
            if row is None or not self.allowed(row[1]):
                return False
            return self.names is None or bool(set(row[0] or ()) & set(self.names))
        if step.type == "DatapointAdded" and not self.scope.may_see(fields.get("body") or {}):
            return False
        if step.type in ("AlertReceived", "DatapointAdded"):
            return self.follows(step.stream)
        return step.type in ("RunStarted", "RunFinished", "ConfigurationRegistered")

    def pruned(self, step: Step) -> Step:
        kept = [self.pruned(c) for c in step.causes if c.missing or self.visible(c)]
        return step.model_copy(update={"causes": kept})


def visible_stock(
    source: Source, ledger: Ledger, stock: str, scope: Scope, position: int | None = None
) -> StockView | None:
    """Return a stock's view as a scope sees it, as of a position (None: now); None if
    there is no such stock or none of the scope's channels follows it (the API's and
    the pages' one way to read a stock)."""
    view = stock_view(source, stock)
    if view is not None and position is not None:
        view = stock_as_of(ledger, stock, position, [r.idempotency_key for r in view.reactions])
    return None if view is None else scoped_view(source, view, scope)


def visible_lineage(
    source: Source, ledger: Ledger, ident: str, scope: Scope, until: int | None = None
) -> Lineage | None:
    """Return the lineage of what an id names, as a scope sees it and as the ledger stood
    at ``until`` (None: now); None if nothing has the id (then) or the scope sees none of
    it (the API's and the pages' one way)."""
    events = resolve(ledger, ident, lambda other: event_ids_of(source, other), until)
    if not events:
        return None
    return scoped_lineage(source, lineage(ledger, events[0], until=until), scope, until)


def visible_rows(source: Source, stocks: list[str], scope: Scope) -> dict[str, StockRow]:
    """Return the rows of those stocks a scope sees (one of its channels follows it, its
    programmes allow it), by id, without reading their whole views."""
    found = stock_rows(source, stocks, scope.channels)
    hidden = hidden_stocks(source, list(found), scope.programids, None)
    return {k: v for k, v in found.items()
            if (scope.channels is None or v.channels) and k not in hidden}  # fmt: skip
