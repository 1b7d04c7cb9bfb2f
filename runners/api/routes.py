"""The routes of ``/api/v1``: every one reads through the query layer, as the caller's
scope allows (see :mod:`runners.api.auth`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from skyledger.ledger.errors import NotFound, QueryError
from skyledger.ledger.when import position_or_time
from skyledger.projections import queries
from skyledger.projections.asof import runs_as_of
from skyledger.projections.changes import MAX_CHANGES, changes
from skyledger.projections.diff import scoped_diff
from skyledger.projections.lineage import Lineage
from skyledger.projections.listing import (
    MAX_LIMIT,
    ResultQuery,
    StockQuery,
    list_results,
    list_stocks,
)
from skyledger.projections.paging import MAX_POSITION, Page
from skyledger.projections.queries import ReactionRow, ResultRow, RunView, StockRow, StockView
from skyledger.projections.reactions import ReactionQuery, list_reactions
from skyledger.projections.visibility import visible_lineage, visible_rows, visible_stock
from skyledger.runners.api.auth import Caller
from skyledger.runners.api.formats import Format, answer
from skyledger.runners.api.problems import Problem
from skyledger.runners.api.tokens import (
    NewToken,
    TokenShown,
    make_own_token,
    own_tokens,
    revoke_own_token,
)
from skyledger.runners.replay import is_job_file, side_of

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with ?format=csv"}
}
MAX_LOOKUP = 1000
MAX_DIFF_CHANGES = 1000
MAX_TOKEN_DAYS = 366


class Served:  # what app.state.served holds (runners.server.Served), as the routes use it
    ledger: Any
    model: Any
    auth: Any


def served(request: Request) -> Any:
    """Return what the app serves (its ledger, read model and authenticator)."""
    return request.app.state.served


def caller(request: Request) -> Caller:
    """Return the request's caller (401 or 429 problems otherwise)."""
    found: Caller = served(request).auth.caller(request)
    return found


Who = Annotated[Caller, Depends(caller)]
AsOf = Annotated[
    str | None,
    Query(description="read as the ledger stood at this position, or at this time (ISO 8601)"),
]
Cursor = Annotated[str | None, Query(description="the next page: the cursor a page gave")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="rows per page")]
FormatQuery = Annotated[Format | None, Query(alias="format", description="json or csv")]


def _position(request: Request, as_of: str | None, name: str = "as_of") -> int | None:
    """Return an ``as_of`` parameter as a position (a time: the ledger's position then)."""
    at = None if as_of is None else position_or_time(name, as_of)
    if isinstance(at, int) and at > MAX_POSITION:
        raise QueryError(f"{name} {at}: a position is 0 to {MAX_POSITION}")
    if at is None or isinstance(at, int):
        return at
    position: int = served(request).ledger.position_at(at)
    return position


class Health(BaseModel):
    """The ledger's head and how far the read model has followed it."""

    status: str
    head: int
    read_model: int


@router.get("/health", response_model=Health, tags=["service"])
def health(request: Request) -> Health:
    """Answer without a credential: the service is up, and how far it has read."""
    s = served(request)
    return Health(status="ok", head=s.ledger.head(), read_model=s.model.position())


class Me(BaseModel):
    """Who the caller is, and the channels it may read."""

    kind: str
    identities: list[str]
    channels: list[str]
    programids: list[int] | None


@router.get("/me", response_model=Me, tags=["service"])
def me(who: Who) -> Me:
    """Return the caller's identities and channels."""
    scope = who.scope
    programids = None if scope.programids is None else sorted(scope.programids)
    return Me(kind=who.kind, identities=sorted(who.identities),
              channels=sorted(scope.channels or ()), programids=programids)  # fmt: skip


@router.get("/stocks", response_model=Page[StockRow], responses=CSV, tags=["stocks"])
def get_stocks(
    request: Request,
    who: Who,
    channel: str | None = None,
    ra: Annotated[float | None, Query(description="cone centre, degrees")] = None,
    dec: Annotated[float | None, Query(description="cone centre, degrees")] = None,
    radius: Annotated[float | None, Query(description="cone radius, arcseconds")] = None,
    since: Annotated[
        int | None, Query(ge=0, le=MAX_POSITION, description="changed after this position")
    ] = None,
    order: Annotated[str | None, Query(description="last_change, stock or distance")] = None,
    variant: Annotated[
        str | None, Query(description="only stocks a channel of this variant accepted")
    ] = None,
    as_of: AsOf = None,
    cursor: Cursor = None,
    limit: Limit = 50,
    format: FormatQuery = None,
) -> Response:
    """List stocks by channel, cone, last change and variant, a page at a time (pinned)."""
    query = StockQuery.parse({"channel": channel, "ra": ra, "dec": dec, "radius_arcsec": radius,
                              "since": since, "order": order, "variant": variant})  # fmt: skip
    s = served(request)
    page = list_stocks(s.model, s.ledger, query, scope=who.scope,
                       as_of=_position(request, as_of), cursor=cursor, limit=limit)  # fmt: skip
    return answer(request, page, format)


@router.get("/stocks/{stock}", response_model=StockView, tags=["stocks"])
def get_stock(
    request: Request,
    who: Who,
    stock: Annotated[str, Path(description="the stock's id, e.g. ZTF21abiuvdk")],
    as_of: AsOf = None,
) -> Response:
    """Return a stock's whole view: datapoints, states, results, reactions, journal."""
    s = served(request)
    mine = visible_stock(s.model, s.ledger, stock, who.scope, _position(request, as_of))
    if mine is None:
        raise NotFound(f"no stock {stock!r}")
    return answer(request, mine, None)


class Lookup(BaseModel):
    """Stock ids to look up at once."""

    stocks: list[str] = Field(min_length=1, max_length=MAX_LOOKUP)


class Found(BaseModel):
    """The stocks found (as rows) and the ids not found (or not the caller's)."""

    items: list[StockRow]
    missing: list[str]
    position: int


@router.post("/stocks/lookup", response_model=Found, tags=["stocks"])
def lookup(request: Request, who: Who, wanted: Annotated[Lookup, Body()]) -> Found:
    """Return up to 1,000 stocks' rows in one request."""
    s = served(request)
    names = list(dict.fromkeys(wanted.stocks))
    mine = visible_rows(s.model, names, who.scope)
    missing = [n for n in names if n not in mine]
    items = [mine[n] for n in names if n in mine]
    return Found(items=items, missing=missing, position=s.model.position())


@router.get("/results", response_model=Page[ResultRow], responses=CSV, tags=["results"])
def get_results(
    request: Request,
    who: Who,
    entry: str | None = None,
    unit: str | None = None,
    variant: str | None = None,
    channel: str | None = None,
    stock: str | None = None,
    path: Annotated[str | None, Query(description="a number in the body: keys by dots")] = None,
    min: float | None = None,
    max: float | None = None,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    latest: bool = False,
    status: Annotated[str, Query(pattern="^(ok|failed)$")] = "ok",
    as_of: AsOf = None,
    cursor: Cursor = None,
    limit: Limit = 50,
    format: FormatQuery = None,
) -> Response:
    """List T2 results by entry, variant, channel and a value in the body (pinned pages)."""
    query = ResultQuery.parse({
        "entry": entry, "unit": unit, "variant": variant, "channel": channel, "stock": stock,
        "path": path, "min": min, "max": max, "order": order, "latest": latest, "status": status,
    })  # fmt: skip
    page = list_results(served(request).model, query, scope=who.scope,
                        as_of=_position(request, as_of), cursor=cursor, limit=limit)  # fmt: skip
    return answer(request, page, format)


class DiffChange(BaseModel):
    """One entry's result of one stock that differs between the sides."""

    entry: str
    stock: str
    kind: str = Field(description="added, removed or changed")
    values: dict[str, dict[str, Any]] = Field(
        description="a changed value by its dotted key: a, b, and for numbers delta and "
        "rank (the stock's rank by it, on each side, if it moved)"
    )


class DiffCompared(BaseModel):
    """What a diff compared: everything, or what the limits of replays cover."""

    limited_by: list[str] = Field(description="the sides that are limited replays")
    empty: bool = Field(description="their ranges of positions do not meet: nothing compared")
    since: int | None
    until: int | None
    stocks: list[str] | None = Field(description="of the limits, the stocks either follows")
    channels: list[str] | None = Field(description="of the limits, the channels compared")


class DiffView(BaseModel):
    """What differs between two variants over the caller's channels (as ``skyledger
    diff --json``, with at most ``limit`` changes of each entry)."""

    a: str
    b: str
    stocks: int = Field(description="stocks followed by a channel of either side compared")
    compared: DiffCompared
    entries: dict[str, dict[str, int]] = Field(
        description="T2 entry -> results added, removed, changed and the same"
    )
    channels: dict[str, dict[str, list[str]]] = Field(
        description="channel -> only_a, only_b: the stocks only one side accepted"
    )
    changes: list[DiffChange]
    cut: dict[str, int] = Field(description="T2 entry -> changes left out by the limit")
    notes: list[str] = Field(description="units compared as their run recorded them")


@router.get("/diff", response_model=DiffView, tags=["results"])
def get_diff(
    request: Request,
    who: Who,
    a: Annotated[str, Query(description="a variant's name or a run id (not a job file)")],
    b: Annotated[str, Query(description="the other side: a variant's name or a run id")],
    limit: Annotated[
        int, Query(ge=1, le=MAX_DIFF_CHANGES, description="changes listed per T2 entry")
    ] = 100,
    as_of: AsOf = None,
) -> DiffView:
    """Compare two variants as ``skyledger diff`` does, over the caller's channels only:
    per T2 entry and stock, results added, removed or changed, and the stocks each
    channel accepted. A variant none of whose channels the caller reads is not found."""
    for spec in (a, b):
        if is_job_file(spec):
            raise Problem(422, "Unprocessable content", f"{spec!r}: a job file is not read "
                          "over HTTP; give a variant's name or a run id")  # fmt: skip
    s = served(request)
    side_a, side_b = (side_of(s.ledger, spec, job_files=False, scope=who.scope)[0]
                      for spec in (a, b))  # fmt: skip
    found = scoped_diff(s.ledger, side_a, side_b, who.scope, until=_position(request, as_of))
    return DiffView.model_validate(found.as_dict(limit))


@router.get("/reactions", response_model=Page[ReactionRow], responses=CSV, tags=["results"])
def get_reactions(
    request: Request,
    who: Who,
    channel: str | None = None,
    stock: str | None = None,
    unit: Annotated[str | None, Query(description="a T3 unit's name")] = None,
    status: Annotated[
        str | None, Query(pattern="^(intended|claimed|delivered|failed)$")
    ] = None,
    as_of: AsOf = None,
    cursor: Cursor = None,
    limit: Limit = 50,
    format: FormatQuery = None,
) -> Response:
    """List the reactions of the caller's channels, newest first, each as its delivery
    stood at the page's position (pinned pages)."""
    query = ReactionQuery.parse({"channel": channel, "stock": stock, "unit": unit,
                                 "status": status})  # fmt: skip
    s = served(request)
    page = list_reactions(s.model, s.ledger, query, scope=who.scope,
                          as_of=_position(request, as_of), cursor=cursor, limit=limit)  # fmt: skip
    return answer(request, page, format)


@router.get("/runs", response_model=list[RunView], tags=["runs"])
def get_runs(
    request: Request,
    who: Who,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    as_of: AsOf = None,
) -> list[RunView]:
    """List the runs, latest first, or as they stood at ``as_of`` (a channel's reader gets
    when, which job, which variant and how each ended: not the job's text, units or
    counts, which are of every channel the job names)."""
    s = served(request)
    position = _position(request, as_of)
    if position is None:
        found = queries.list_runs(s.model, limit)
    else:
        operator = who.scope.channels is None
        found = runs_as_of(s.model, s.ledger, position, limit, counts=operator)
    if who.scope.channels is None:
        return found
    hidden: dict[str, Any] = {
        "job_text": None,
        "argv": None,
        "units": None,
        "summary": None,
        "counts": {},
    }
    return [r.model_copy(update=hidden) for r in found]


@router.get("/lineage/{ident}", response_model=Lineage, tags=["results"])
def get_lineage(
    request: Request,
    who: Who,
    ident: Annotated[str, Path(description="an event, result, state or datapoint id, ...")],
    as_of: AsOf = None,
) -> Lineage:
    """Explain a result, state, reaction, datapoint or alert: its lineage as a tree (as
    the ledger stood at ``as_of``: what came later is not there)."""
    s = served(request)
    found = visible_lineage(s.model, s.ledger, ident, who.scope, _position(request, as_of))
    if found is None:
        raise NotFound(f"nothing has the id {ident!r}")
    return found


@router.get(
    "/changes",
    tags=["results"],
    responses={200: {"content": {"application/x-ndjson": {}},
                     "description": "a JSON object a line; the last line is the end"}},
)  # fmt: skip
def get_changes(
    request: Request,
    who: Who,
    since: Annotated[int, Query(ge=0, le=MAX_POSITION, description="the last position seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_CHANGES)] = 1000,
    until: Annotated[
        str | None,
        Query(
            description="up to this position, or the ledger's position at this time "
            "(ISO 8601): the feed as it stood then"
        ),
    ] = None,
) -> StreamingResponse:
    """Stream new states, results and reactions of the caller's channels after a position
    (up to ``until``), as NDJSON; the last line, ``{"kind": "end", "position": P}``, says
    where to go on from."""
    s = served(request)
    upper = _position(request, until, "until")
    found, position = changes(s.model, s.ledger, who.scope, since, limit, upper)

    def lines() -> Iterator[bytes]:
        for change in found:
            yield orjson.dumps(change, default=str) + b"\n"
        yield orjson.dumps({"kind": "end", "position": position}) + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


class TokenMade(BaseModel):
    """A token made: shown once, never again."""

    token: str
    token_id: str
    expires: dt.datetime
    channels: list[str] | None


@router.post("/tokens", response_model=TokenMade, status_code=201, tags=["tokens"])
def make_my_token(request: Request, who: Who, wanted: NewToken) -> TokenMade:
    """Make a personal access token for the signed-in caller (shown once)."""
    s = served(request)
    issued = make_own_token(s.ledger, s.model, who, wanted, "API")
    return TokenMade(token=issued.token, token_id=issued.token_id, expires=issued.expires,
                     channels=issued.channels)  # fmt: skip


@router.get("/tokens", response_model=list[TokenShown], tags=["tokens"])
def my_tokens(request: Request, who: Who) -> list[TokenShown]:
    """List the caller's own tokens."""
    return own_tokens(served(request).model, who)


@router.delete("/tokens/{token_id}", status_code=204, tags=["tokens"])
def revoke_my_token(request: Request, who: Who, token_id: str) -> Response:
    """Revoke one of the caller's own tokens."""
    s = served(request)
    revoke_own_token(s.ledger, s.model, who, token_id)
    return Response(status_code=204)
