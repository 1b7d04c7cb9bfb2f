"""The routes of ``/api/v1``: every one reads through the query layer, as the caller's
scope allows (see :mod:`runners.api.auth`)."""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from ledger.access import TokenIssued, TokenRevoked
from ledger.errors import NotFound, QueryError
from ledger.when import position_or_time
from projections import queries
from projections.access import TokenRow, make_token, token_digest, tokens
from projections.asof import runs_as_of
from projections.changes import MAX_CHANGES, changes
from projections.lineage import Lineage, lineage, resolve
from projections.listing import MAX_LIMIT, ResultQuery, StockQuery, list_results, list_stocks
from projections.paging import MAX_POSITION, Page
from projections.queries import ResultRow, RunView, StockRow, StockView
from projections.rights import hidden_stocks
from projections.visibility import scoped_lineage, scoped_view
from runners.api.auth import Caller
from runners.api.formats import Format, answer
from runners.api.problems import Problem

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with ?format=csv"}
}
MAX_LOOKUP = 1000
MAX_TOKEN_DAYS = 366


class Served:  # what app.state.served holds (runners.api.app.Served), as the routes use it
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
    as_of: AsOf = None,
    cursor: Cursor = None,
    limit: Limit = 50,
    format: FormatQuery = None,
) -> Response:
    """List stocks by channel, cone and last change, a page at a time (pinned pages)."""
    query = StockQuery.parse(
        {
            "channel": channel,
            "ra": ra,
            "dec": dec,
            "radius_arcsec": radius,
            "since": since,
            "order": order,
        }
    )
    s = served(request)
    page = list_stocks(s.model, s.ledger, query, scope=who.scope,
                       as_of=_position(request, as_of), cursor=cursor, limit=limit)  # fmt: skip
    return answer(request, page.model_dump(mode="json"), format)


@router.get("/stocks/{stock}", response_model=StockView, tags=["stocks"])
def get_stock(
    request: Request,
    who: Who,
    stock: Annotated[str, Path(description="the stock's id, e.g. ZTF21abiuvdk")],
    as_of: AsOf = None,
) -> Response:
    """Return a stock's whole view: datapoints, states, results, reactions, journal."""
    from projections.asof import stock_as_of

    s = served(request)
    view = queries.stock_view(s.model, stock)
    position = _position(request, as_of)
    if view is not None and position is not None:
        view = stock_as_of(s.ledger, stock, position, [r.idempotency_key for r in view.reactions])
    mine = None if view is None else scoped_view(s.model, view, who.scope)
    if mine is None:
        raise NotFound(f"no stock {stock!r}")
    return answer(request, mine.model_dump(mode="json"), None)


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
    found = queries.stock_rows(s.model, names, who.scope.channels)
    hidden = hidden_stocks(s.model, list(found), who.scope.programids, None)
    mine = {k: v for k, v in found.items()
            if (who.scope.channels is None or v.channels) and k not in hidden}  # fmt: skip
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
    return answer(request, page.model_dump(mode="json"), format)


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
    until = _position(request, as_of)
    events = resolve(s.ledger, ident, lambda other: queries.event_ids_of(s.model, other), until)
    if not events:
        raise NotFound(f"nothing has the id {ident!r}")
    found = scoped_lineage(s.model, lineage(s.ledger, events[0], until=until), who.scope, until)
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


class NewToken(BaseModel):
    """A personal access token to make for the caller."""

    name: str = Field(default="", max_length=100)
    channels: list[str] | None = Field(default=None, description="None: all the caller's")
    days: int = Field(default=90, ge=1, le=MAX_TOKEN_DAYS, description="valid for")


class Made(BaseModel):
    """A token made: shown once, never again."""

    token: str
    token_id: str
    expires: dt.datetime
    channels: list[str] | None


@router.post("/tokens", response_model=Made, status_code=201, tags=["tokens"])
def make_my_token(request: Request, who: Who, wanted: NewToken) -> Made:
    """Make a personal access token for the signed-in caller (shown once)."""
    users = sorted(i for i in who.identities if i.startswith("user:"))
    if who.kind != "oidc" or not users:
        raise Problem(403, "Forbidden", "sign in with your identity provider to make a token")
    if wanted.channels is not None:
        unknown = sorted(set(wanted.channels) - set(who.scope.channels or ()))
        if unknown:
            raise NotFound(f"no channel {unknown[0]!r}")
    token, token_id = make_token()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=wanted.days)
    channels = None if wanted.channels is None else tuple(sorted(wanted.channels))
    s = served(request)
    s.ledger.append([TokenIssued(
        stream=f"token:{token_id}", token_id=token_id, digest=token_digest(token),
        owner=users[0], name=wanted.name, channels=channels, expires=expires,
        by=f"{users[0]} (self, API)", identities=tuple(sorted(who.identities)),
    )])  # fmt: skip
    s.model.catch_up(s.ledger)
    return Made(token=token, token_id=token_id, expires=expires,
                channels=None if channels is None else list(channels))  # fmt: skip


class TokenShown(BaseModel):
    """A token as its owner sees it (never its secret)."""

    token_id: str
    name: str
    channels: list[str] | None
    expires: dt.datetime
    revoked: bool
    last_used: dt.datetime | None = Field(description="to the minute; None: not yet")


def _owned(request: Request, who: Who) -> list[TokenRow]:
    rows: list[TokenRow] = []
    for identity in sorted(who.identities):
        if identity.startswith("user:"):
            rows += tokens(served(request).model, owner=identity)
    return rows


@router.get("/tokens", response_model=list[TokenShown], tags=["tokens"])
def my_tokens(request: Request, who: Who) -> list[TokenShown]:
    """List the caller's own tokens."""
    return [TokenShown(token_id=t.token_id, name=t.name, channels=t.channels, expires=t.expires,
                       revoked=t.revoked_position is not None, last_used=t.last_used)
            for t in _owned(request, who)]  # fmt: skip


@router.delete("/tokens/{token_id}", status_code=204, tags=["tokens"])
def revoke_my_token(request: Request, who: Who, token_id: str) -> Response:
    """Revoke one of the caller's own tokens."""
    if not any(t.token_id == token_id for t in _owned(request, who)):
        raise NotFound(f"no token {token_id!r}")
    s = served(request)
    by = ", ".join(sorted(who.identities)) or getpass.getuser()
    s.ledger.append([TokenRevoked(stream=f"token:{token_id}", token_id=token_id, by=by)])
    s.model.catch_up(s.ledger)
    return Response(status_code=204)
