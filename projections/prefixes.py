"""Ids by any unique prefix: what ``stock``, ``why`` and the other commands accept.

Tables print ids cut to 12 characters; every command that takes an id takes any prefix
of one that names exactly one id the read model knows (of the kinds asked for).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from skyledger.ledger.errors import NotFound, QueryError
from skyledger.projections import models as m
from skyledger.projections.fold import table_of
from skyledger.projections.queries import Source, reading

__all__ = ["KINDS", "complete", "expand"]

KINDS: dict[str, tuple[type[m.Base], str]] = {
    "stock": (m.Stock, "stock"),
    "event": (m.JournalEntry, "event_id"),
    "result": (m.Result, "result_id"),
    "state": (m.State, "state_id"),
    "datapoint": (m.Datapoint, "datapoint_id"),
    "alert": (m.Alert, "alert_id"),
    "packet digest": (m.Alert, "digest"),
    "reaction": (m.Reaction, "idempotency_key"),
    "run": (m.Run, "run_id"),
    "configuration": (m.Config, "config_hash"),
}
"""The kinds of ids, and the read-model column that holds each."""
_SHOWN = 5


def complete(source: Source, prefix: str, kinds: Sequence[str]) -> dict[str, list[str]]:
    """Return, by kind, the ids (up to a few more than one) that start with ``prefix``."""
    found: dict[str, list[str]] = {}
    with reading(source) as conn:
        for kind in kinds:
            model, name = KINDS[kind]
            column = table_of(model).c[name]
            query = (
                select(column)
                .where(column.startswith(prefix, autoescape=True))
                .distinct()
                .order_by(column)
                .limit(_SHOWN + 1)
            )
            ids = [str(i) for i in conn.execute(query).scalars() if i is not None]
            if ids:
                found[kind] = ids
    return found


def expand(source: Source, prefix: str, kinds: Sequence[str]) -> tuple[str, str]:
    """Return (kind, id) of the one id of these kinds that is or starts with ``prefix``;
    raise NotFound if none does, QueryError naming some if several do."""
    if not prefix:
        raise QueryError("an empty id")
    found = complete(source, prefix, kinds)
    exact = [(kind, i) for kind, ids in found.items() for i in ids if i == prefix]
    if exact:
        return exact[0]
    every = [(kind, i) for kind, ids in found.items() for i in ids]
    if not every:
        raise NotFound(f"no {' or '.join(kinds)} id starts with {prefix!r}")
    if len(every) > 1:
        shown = ", ".join(f"{i} ({kind})" for kind, i in every[:_SHOWN])
        more = " and more" if len(every) > _SHOWN else ""
        msg = f"{prefix!r} is the start of several ids: {shown}{more}; give more characters"
        raise QueryError(msg)
    return every[0]
