"""Commands that read what the ledger recorded about its runs, lineage and reactions:
``runs``, ``why`` and ``reactions``, each now or ``--as-of`` a position or time."""

from __future__ import annotations

from typing import Annotated

import typer

from ledger.errors import ConfigError, NotFound
from ledger.settings import DEFAULT_LEDGER_URL, redact
from runners.cli_common import (
    PIPED,
    AsOfOption,
    CursorOption,
    JsonOption,
    LedgerOption,
    LimitOption,
    model_of,
    open_ledger,
    out,
    page_end,
    position_of,
    print_json,
    read_model,
)
from runners.show import show_lineage, show_reactions, show_runs

__all__ = ["reactions", "runs", "why"]


def runs(
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option(min=1, help="the latest runs to list")] = 20,
    as_of: AsOfOption = None,
) -> None:
    """List the runs of a ledger, latest first: job name, variant, status and counts;
    with --as-of, as they stood then (a run that finished later is shown running)."""
    from projections import queries
    from projections.asof import runs_as_of

    opened, model = read_model(ledger)
    with opened, model:
        position = position_of(opened, "--as-of", as_of)
        if position is None:
            found = queries.list_runs(model, limit)
        else:
            found = runs_as_of(model, opened, position, limit)
    if as_json:
        print_json([r.model_dump(mode="json") for r in found])
    else:
        show_runs(out, found)
        if position is not None:
            out.print(f"as of position {position}", highlight=False)


_WHY_KINDS = ("event", "result", "state", "datapoint", "alert", "packet digest", "reaction")


def why(
    ident: Annotated[
        str,
        typer.Argument(
            metavar="ID",
            help="an event id; a result, state, datapoint or survey alert id; a reaction's "
            "idempotency key; a packet digest; or any unique start of one",
        ),
    ],
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    packages: Annotated[
        bool, typer.Option("--packages", help="list each run's package versions")
    ] = False,
    as_of: AsOfOption = None,
) -> None:
    """Explain a reaction, result, state, datapoint or alert: its lineage as a tree down to
    the packets (source, position, digest), with the unit, version, code digest,
    configuration and duration of each step, and the runs that recorded them (job hash
    and text, host, user, package versions); with --as-of, as the ledger held it then."""
    from projections import queries
    from projections.lineage import lineage, resolve
    from projections.prefixes import expand

    with open_ledger(ledger, create=False) as opened:
        until = position_of(opened, "--as-of", as_of)

        def lookup(other: str) -> list[str]:  # ids only the read model knows
            with model_of(opened) as model:
                return queries.event_ids_of(model, other)

        events = resolve(opened, ident, lookup, until)
        if not events:  # the start of an id, as tables print them
            with model_of(opened) as model:
                try:
                    _, whole = expand(model, ident, _WHY_KINDS)
                except NotFound:
                    whole = None
            events = [] if whole is None else resolve(opened, whole, lookup, until)
        if not events:
            then = "" if until is None else f" as of position {until}"
            raise ConfigError(
                f"nothing in {redact(ledger)}{then} has the id {ident!r}: give an event, "
                "result, state, datapoint or alert id, an idempotency key or a packet digest"
            )
        found = lineage(opened, events[0], until=until)
        found.also = [e.id for e in events[1:]]
    if as_json:
        out.print_json(found.model_dump_json())
        return
    show_lineage(out, found, packages)
    if found.also:
        out.print(f"{ident} also names {len(found.also)} other events (give an event id to "
                  f"see one): {', '.join(found.also)}", highlight=False)  # fmt: skip


def reactions(
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    channel: Annotated[str | None, typer.Option(help="only this channel's")] = None,
    stock_id: Annotated[str | None, typer.Option("--stock", help="only about this stock")] = None,
    unit: Annotated[str | None, typer.Option(help="only this T3 unit's")] = None,
    status: Annotated[
        str | None, typer.Option(help="intended, claimed, delivered or failed")
    ] = None,
    as_of: AsOfOption = None,
    cursor: CursorOption = None,
    limit: LimitOption = 50,
) -> None:
    """List the reactions T3 units intended and how each delivery stands, newest first,
    a page at a time, each page as of one ledger position."""
    from projections.reactions import ReactionQuery, list_reactions

    opened, model = read_model(ledger)
    with opened, model:
        query = ReactionQuery.parse({"channel": channel, "stock": stock_id, "unit": unit,
                                     "status": status})  # fmt: skip
        page = list_reactions(model, opened, query, as_of=position_of(opened, "--as-of", as_of),
                              cursor=cursor, limit=limit)  # fmt: skip
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    show_reactions(out, page.items, whole_ids=PIPED)
    page_end(page, "reactions")
