"""Commands that read what the ledger recorded, through the query layer: ``stock``,
``stocks``, ``results``, ``runs``, ``failures``, ``config``, ``why`` and ``reactions``;
those that take ``--as-of`` read as the ledger stood at a position or time."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Annotated

import typer

from skyledger.ledger.errors import ConfigError, NotFound
from skyledger.ledger.settings import DEFAULT_LEDGER_URL, redact
from skyledger.ledger.when import position_or_time
from skyledger.runners.cli_common import (
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
from skyledger.runners.show import (
    JOURNAL_LINES,
    show_configs,
    show_failures,
    show_lineage,
    show_reactions,
    show_results,
    show_runs,
    show_stock,
    show_stocks,
)

__all__ = [
    "as_of_value",
    "config",
    "failures",
    "reactions",
    "results",
    "runs",
    "stock",
    "stocks",
    "why",
]


def runs(
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option(min=1, help="the latest runs to list")] = 20,
    as_of: AsOfOption = None,
) -> None:
    """List the runs of a ledger, latest first: job name, variant, status and counts;
    with --as-of, as they stood then (a run that finished later is shown running)."""
    from skyledger.projections import queries
    from skyledger.projections.asof import runs_as_of

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
    from skyledger.projections import queries
    from skyledger.projections.lineage import lineage, resolve
    from skyledger.projections.prefixes import expand

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
    from skyledger.projections.reactions import ReactionQuery, list_reactions

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


def stock(
    stock_id: Annotated[str, typer.Argument(metavar="STOCK", help="e.g. ZTF21abiuvdk, lsst:123")],
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    full: Annotated[
        bool, typer.Option("--full", help="show result bodies whole and the whole journal")
    ] = False,
    journal: Annotated[
        int, typer.Option(min=0, help="journal lines to show, the latest (0: all)")
    ] = JOURNAL_LINES,
    as_of: AsOfOption = None,
    variant: Annotated[
        str | None, typer.Option("--variant", help="only the results of this variant's entries")
    ] = None,
) -> None:
    """Show a stock: light curve, states, results (entry, version, configuration, the state
    they are about, body), reactions and its journal; with --as-of, as they stood then.
    STOCK may be any unique start of a stock's id."""
    from skyledger.projections import queries
    from skyledger.projections.asof import stock_as_of
    from skyledger.projections.listing import variant_keys
    from skyledger.projections.prefixes import expand

    when = as_of_value(as_of)
    position: int | None = None
    opened, model = read_model(ledger)
    with opened, model:
        view = queries.stock_view(model, stock_id)
        if view is None:
            with contextlib.suppress(NotFound):  # else: no such stock, said below
                _, stock_id = expand(model, stock_id, ["stock"])
                view = queries.stock_view(model, stock_id)
        mine = None if variant is None else variant_keys(model, variant)
        if when is not None:
            position = when if isinstance(when, int) else opened.position_at(when)
            position = min(position, opened.head())
            if view is not None:
                keys = [r.idempotency_key for r in view.reactions]
                view = stock_as_of(opened, stock_id, position, keys)
    then = "" if position is None else f" as of position {position}"
    if position is not None and not isinstance(when, int):
        then += f" ({as_of})"
    if view is None:
        raise ConfigError(f"no stock {stock_id!r} in {redact(ledger)}{then}")
    if mine is not None:
        kept = tuple(r for r in view.results if r.key() in mine)
        view = view.model_copy(update={"results": kept})
    if as_json:
        data = view.model_dump(mode="json")
        print_json(data if position is None else {"as_of": position, **data})
        return
    if position is not None:
        out.print(f"{stock_id}{then}: what the ledger held then", highlight=False)
    show_stock(out, view, full, journal, whole_ids=PIPED)


def stocks(
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    channel: Annotated[str | None, typer.Option(help="only stocks this channel follows")] = None,
    cone: Annotated[
        tuple[float, float, float] | None,
        typer.Option(metavar="RA DEC RADIUS", help="within RADIUS arcseconds of RA, DEC (deg)"),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(metavar="POSITION|TIME", help="only stocks changed after this"),
    ] = None,
    order: Annotated[
        str | None,
        typer.Option(help="last_change (latest first), stock, or distance (a cone's default)"),
    ] = None,
    variant: Annotated[
        str | None, typer.Option(help="only stocks a channel of this replay's variant accepted")
    ] = None,
    as_of: AsOfOption = None,
    cursor: CursorOption = None,
    limit: LimitOption = 50,
) -> None:
    """List stocks by channel, position on the sky, time of their last change and variant,
    a page at a time, each page as of one ledger position (pages never shift as the ledger
    grows)."""
    from skyledger.projections.listing import StockQuery, list_stocks

    opened, model = read_model(ledger)
    with opened, model:
        query = StockQuery.parse({
            "channel": channel, "since": position_of(opened, "--since", since), "order": order,
            "variant": variant,
            **(dict(zip(("ra", "dec", "radius_arcsec"), cone, strict=True)) if cone else {}),
        })  # fmt: skip
        page = list_stocks(model, opened, query, as_of=position_of(opened, "--as-of", as_of),
                           cursor=cursor, limit=limit)  # fmt: skip
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    show_stocks(out, page.items, whole_ids=PIPED)
    page_end(page, "stocks")


def results(
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    entry: Annotated[str | None, typer.Option(help="a job's T2 entry name")] = None,
    unit: Annotated[str | None, typer.Option(help="a T2 unit's name")] = None,
    variant: Annotated[str | None, typer.Option(help="a replay's variant")] = None,
    channel: Annotated[str | None, typer.Option(help="only this channel's results")] = None,
    stock_id: Annotated[str | None, typer.Option("--stock", help="only this stock's")] = None,
    path: Annotated[
        str | None, typer.Option(help="a number in the body to sort by: keys joined by dots")
    ] = None,
    low: Annotated[float | None, typer.Option("--min", help="the value at least this")] = None,
    high: Annotated[float | None, typer.Option("--max", help="the value at most this")] = None,
    ascending: Annotated[
        bool, typer.Option("--ascending", help="smallest value first (default: largest)")
    ] = False,
    latest: Annotated[
        bool, typer.Option("--latest", help="each stock's latest result only")
    ] = False,
    failed: Annotated[bool, typer.Option("--failed", help="failed results instead")] = False,
    as_of: AsOfOption = None,
    cursor: CursorOption = None,
    limit: LimitOption = 50,
) -> None:
    """List T2 results by entry, variant, channel and a value in their bodies (a range,
    sorted either way), a page at a time, each page as of one ledger position."""
    from skyledger.projections.listing import ResultQuery, list_results

    opened, model = read_model(ledger)
    with opened, model:
        query = ResultQuery.parse({
            "entry": entry, "unit": unit, "variant": variant, "channel": channel,
            "stock": stock_id, "path": path, "min": low, "max": high, "latest": latest,
            "order": "asc" if ascending else "desc", "status": "failed" if failed else "ok",
        })  # fmt: skip
        page = list_results(model, query, as_of=position_of(opened, "--as-of", as_of),
                            cursor=cursor, limit=limit)  # fmt: skip
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    show_results(out, page.items, path, whole_ids=PIPED)
    page_end(page, "results")


def failures(
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    stock_id: Annotated[
        str | None, typer.Option("--stock", help="only this stock's failures")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="only this run's failures")] = None,
    limit: Annotated[int, typer.Option(min=1, help="the latest failures to show")] = 20,
) -> None:
    """List T2 results that failed, with their errors and tracebacks."""
    from skyledger.projections import queries
    from skyledger.projections.prefixes import expand

    opened, model = read_model(ledger)
    with opened, model:
        whole = {}
        for kind, given in (("stock", stock_id), ("run", run_id)):
            try:
                whole[kind] = None if given is None else expand(model, given, [kind])[1]
            except NotFound:
                raise ConfigError(f"no {kind} {given!r} in {redact(ledger)}") from None
        stock_id, run_id = whole["stock"], whole["run"]
        found = queries.failed_results(model, stock_id, run_id, limit)
    if as_json:
        print_json([r.model_dump(mode="json") for r in found])
    else:
        show_failures(out, found)


def config(
    config_hash: Annotated[
        str, typer.Argument(metavar="HASH", help="a configuration hash, or its first digits")
    ],
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
) -> None:
    """Print a unit configuration recorded under its hash (runs and results show hashes)."""
    from skyledger.projections import queries

    opened, model = read_model(ledger)
    with opened, model:
        found = queries.find_configs(model, config_hash.lower())
    if not found:
        raise ConfigError(f"no configuration {config_hash!r} in {redact(ledger)}")
    if as_json:
        print_json([c.model_dump(mode="json") for c in found])
    else:
        show_configs(out, found)


def as_of_value(value: str | None) -> int | dt.datetime | None:
    """Return --as-of as a position or an aware time, or refuse it, naming the option."""
    return None if value is None else position_or_time("--as-of", value)
