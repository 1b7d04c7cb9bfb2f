"""Listings of stocks and results by value, each page pinned to a ledger position.

``list_stocks`` finds stocks by channel, by position on the sky (a cone, through the
HEALPix index of each stock's mean position), by the time of their last change, in the
order of their last change (latest first), of their ids, or of their distance from a
cone's centre. ``list_results`` finds T2 results by entry (or unit), variant, channel,
stock and a numeric value at a path into their bodies (a range, sorted either way),
optionally only each stock's latest.

Every listing is read as of one position P (see :mod:`projections.paging`): the read
model's own position for a first page, or the ``as_of`` asked for (never past the read
model's). A row that existed at P is shown as it was at P: rows the ledger changed
after P (a stock's newer alerts) are folded again from the ledger's events up to P
(:mod:`projections.asof`), so a page read later shows the same rows. Results are
immutable once derived, so a result listing only leaves out what came after P.
What a caller may see is given by its :class:`~projections.scope.Scope`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Float, Text

from skyledger.ledger import Ledger
from skyledger.ledger.errors import NotFound, QueryError
from skyledger.projections import models as m
from skyledger.projections.asof import folded_as_of
from skyledger.projections.fold_ranks import ranked_paths
from skyledger.projections.paging import MAX_POSITION, Cursor, Page, query_digest
from skyledger.projections.queries import ResultRow, StockRow, reading, rows_of, stock_rows
from skyledger.projections.readmodel import ReadModel
from skyledger.projections.rights import programmes_allow
from skyledger.projections.scope import Scope
from skyledger.projections.sky import Cone
from skyledger.units.celestial import separation_deg

__all__ = [
    "MAX_LIMIT",
    "ListingQuery",
    "ResultQuery",
    "StockQuery",
    "accepted_by",
    "entry_keys",
    "list_results",
    "list_stocks",
    "page_limit",
    "pinned_position",
    "result_visible",
    "variant_keys",
]

MAX_LIMIT = 1000
_PATH = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
UnitKey = tuple[str, str, str, str]  # unit, version, code digest, configuration hash


class ListingQuery(BaseModel):
    """A listing's filters, parsed from what a caller gave (CLI options, query strings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Self:
        """Return the query ``data`` gives, or raise QueryError naming each bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(query)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise QueryError(problems) from None


class StockQuery(ListingQuery):
    """What stocks to list: filters (all optional) and the order."""

    channel: str | None = Field(default=None, description="only stocks this channel follows")
    ra: float | None = Field(default=None, description="cone centre, degrees (with dec, radius)")
    dec: float | None = Field(default=None, description="cone centre, degrees")
    radius_arcsec: float | None = Field(default=None, description="cone radius, arcseconds")
    since: int | None = Field(
        default=None, ge=0, le=MAX_POSITION, description="only stocks changed after this position"
    )
    order: Literal["last_change", "stock", "distance"] | None = Field(
        default=None, description="default: distance for a cone, else last_change (latest first)"
    )
    variant: str | None = Field(
        default=None, description="only stocks a channel of this replay's variant accepted"
    )

    def cone(self) -> Cone | None:
        """Return the cone asked for, None if none; refuse a partial or impossible one."""
        given = [self.ra is not None, self.dec is not None, self.radius_arcsec is not None]
        if not any(given):
            return None
        if not all(given):
            raise QueryError("a cone search needs ra, dec and radius together")
        try:
            return Cone(float(self.ra or 0), float(self.dec or 0), float(self.radius_arcsec or 0))
        except ValueError as exc:
            raise QueryError(f"cone: {exc}") from None

    def ordering(self) -> str:
        """Return the order, refusing ``distance`` without a cone."""
        if self.order == "distance" and self.cone() is None:
            raise QueryError("order 'distance' needs a cone (ra, dec, radius)")
        return self.order or ("distance" if self.cone() is not None else "last_change")


class ResultQuery(ListingQuery):
    """What T2 results to list: filters (all optional), a value and the order."""

    entry: str | None = Field(default=None, description="the job's T2 entry name")
    unit: str | None = Field(default=None, description="the T2 unit's name")
    variant: str | None = Field(default=None, description="a replay's variant (its entries)")
    channel: str | None = Field(default=None, description="only results of this channel")
    stock: str | None = Field(default=None, description="only this stock's results")
    path: str | None = Field(default=None, description="dotted path to a number in the body")
    min: float | None = Field(default=None, description="the value at least this")
    max: float | None = Field(default=None, description="the value at most this")
    order: Literal["asc", "desc"] = Field(default="desc", description="by the value (or time)")
    latest: bool = Field(default=False, description="each stock's latest result only")
    status: Literal["ok", "failed"] = Field(default="ok", description="derived, or failed")

    def keys(self) -> list[str]:
        """Return the path's keys, refusing a malformed path or a range without one."""
        if self.path is None:
            if self.min is not None or self.max is not None:
                raise QueryError("a value range (min, max) needs a path into the body")
            return []
        if not _PATH.match(self.path):
            msg = f"path {self.path!r}: give keys joined by dots, e.g. per_band.r.peak_mag"
            raise QueryError(msg)
        return self.path.split(".")


def pinned_position(conn: Connection, as_of: int | None, cursor: Cursor | None) -> int:
    """Return the position a listing is read as of: the cursor's, else ``as_of``, else
    the read model's (never past the read model's)."""
    tracked = conn.execute(
        select(m.Tracking.position).where(m.Tracking.name == ReadModel.name)
    ).scalar_one_or_none()
    built = int(tracked or 0)
    if cursor is not None:
        return cursor.position
    if as_of is not None:
        if not 0 <= as_of <= MAX_POSITION:
            raise QueryError(f"as_of {as_of}: a position is 0 to {MAX_POSITION}")
        return min(as_of, built)
    return built


def page_limit(limit: int) -> int:
    """Return a listing's rows per page, or refuse it (1 to MAX_LIMIT)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit {limit}: give 1 to {MAX_LIMIT}")
    return limit


def _after(
    keys: Sequence[ColumnElement[Any]], after: Sequence[Any], desc: Sequence[bool]
) -> ColumnElement[bool]:
    """Return the keyset condition 'sorts after ``after``' for mixed directions."""
    terms = []
    for i, (key, value) in enumerate(zip(keys, after, strict=True)):
        past = key < value if desc[i] else key > value
        same = [k == v for k, v in zip(keys[:i], after[:i], strict=True)]
        terms.append(and_(*same, past))
    return or_(*terms)


# ---------------------------------------------------------------------------- stocks


def list_stocks(
    model: ReadModel,
    ledger: Ledger,
    query: StockQuery,
    scope: Scope | None = None,
    as_of: int | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[StockRow]:
    """Return a page of stocks (module doc), read as of one position."""
    scope = scope or Scope()
    limit = page_limit(limit)
    order = query.ordering()
    cone = query.cone()
    digest = query_digest(what="stocks", query=query.model_dump(), scope=scope.model_dump())
    pin = None if cursor is None else Cursor.decode(cursor, digest)
    channels = scope.narrow(query.channel)
    with reading(model) as conn:
        assert isinstance(conn, Connection)
        position = pinned_position(conn, as_of, pin)
        s, j, c = m.Stock.__table__, m.JournalEntry.__table__, m.StockChannel.__table__
        at: Any = bindparam("at", position)
        last = case(
            (s.c.last_position <= at, s.c.last_position),
            else_=select(func.max(j.c.position))
            .where(j.c.stock == s.c.stock, j.c.position <= at)
            .scalar_subquery(),
        ).label("as_of_last")
        sql = select(s.c.stock, s.c.last_position, last).where(s.c.first_position <= at)
        if scope.programids is not None:
            sql = sql.where(programmes_allow(s.c.stock, at, scope.programids))
        if channels is not None and cone is None:  # a cone's few candidates: checked after
            sql = sql.where(exists(select(literal(1)).where(
                c.c.stock == s.c.stock, c.c.channel.in_(sorted(channels)),
                c.c.first_accepted_position <= at,
            )))  # fmt: skip
        if query.since is not None:
            sql = sql.where(s.c.last_position > query.since, last > query.since)
        if query.variant is not None:
            sql = sql.where(accepted_by(conn, query.variant, s.c.stock, at, channels))
        if cone is not None:
            ranges = [and_(s.c.hpx >= a, s.c.hpx < b) for a, b in cone.ranges()]
            sql = sql.where(or_(*ranges))
            return _cone_page(model, ledger, conn, sql, cone, order, scope.channels,
                              channels, position, pin, digest, limit)  # fmt: skip
        if order == "stock":
            keys, desc = [s.c.stock], [False]
        else:
            keys, desc = [last, s.c.stock], [True, False]
        if pin is not None:
            sql = sql.where(_after(keys, pin.after, desc))
        sql = sql.order_by(*(k.desc() if d else k.asc() for k, d in zip(keys, desc, strict=True)))
        found = conn.execute(sql.limit(limit + 1)).all()
    names = [r.stock for r in found]
    rows = _as_of(model, ledger, names, {r.stock for r in found if r.last_position > position},
                  position, scope.channels)  # fmt: skip
    ordered = [rows[n] for n in names]
    keyed = [(r.stock,) if order == "stock" else (r.last_position, r.stock) for r in ordered]
    return Page[StockRow].of(ordered, keyed, limit, position, digest)


def accepted_by(
    conn: Connection, variant: str, stock: Any, at: Any, channels: frozenset[str] | None
) -> ColumnElement[bool]:
    """Return 'a filter of the variant's channels (those of ``channels``, None: all)
    accepted an alert of the stock by ``at``': the channels as its runs recorded them
    (name, unit and configuration), so a variant whose filter changed is told apart from
    the run it varies. NotFound for a variant no run has."""
    runs, d = m.Run.__table__, m.Decision.__table__
    filters: set[tuple[str, str, str]] = set()
    known = False
    for (units,) in conn.execute(select(runs.c.units).where(runs.c.variant == variant)):
        known = True
        for u in units or ():
            role = str(u.get("role", ""))
            if role.startswith("filter:") and (channels is None or role[7:] in channels):
                filters.add((role[7:], str(u["unit"]), str(u["config"])))
    if not known:
        raise NotFound(f"no variant {variant!r} in the ledger's runs")
    if not filters:
        return false()
    return exists(select(literal(1)).where(
        d.c.stock == stock, d.c.accepted, d.c.position <= at,
        or_(*(and_(d.c.channel == c, d.c.unit == u, d.c.config == f) for c, u, f in filters)),
    ))  # fmt: skip


def _cone_page(
    model: ReadModel,
    ledger: Ledger,
    conn: Connection,
    sql: Select[Any],
    cone: Cone,
    order: str,
    channels: frozenset[str] | None,
    wanted: frozenset[str] | None,
    position: int,
    pin: Cursor | None,
    digest: str,
    limit: int,
) -> Page[StockRow]:
    """Return a page of a cone search: the index's candidates, placed as of the position,
    kept within the radius and if followed by a ``wanted`` channel (then), sorted by
    distance (or as asked) and paged in order. The channels are checked on the few
    candidates, not in SQL, so that a channel following many stocks costs nothing."""
    found = conn.execute(sql).all()
    moved = {r.stock for r in found if r.last_position > position}
    rows = _as_of(model, ledger, [r.stock for r in found], moved, position, channels)
    hits: list[tuple[tuple[Any, ...], StockRow]] = []
    for row in rows.values():
        if row.ra is None or row.dec is None or not cone.contains(row.ra, row.dec):
            continue
        if wanted is not None and not wanted & set(row.channels):
            continue
        distance = separation_deg(cone.ra, cone.dec, row.ra, row.dec) * 3600.0
        key: tuple[Any, ...]
        if order == "distance":
            key = (round(distance, 9), row.stock)
        elif order == "stock":
            key = (row.stock,)
        else:
            key = (-row.last_position, row.stock)
        hits.append((key, row))
    hits.sort(key=lambda h: h[0])
    if pin is not None:
        after = tuple(pin.after)
        hits = [h for h in hits if h[0] > after]
    taken = hits[: limit + 1]
    return Page[StockRow].of([h[1] for h in taken], [h[0] for h in taken], limit, position,
                             digest)  # fmt: skip


def _as_of(
    model: ReadModel,
    ledger: Ledger,
    stocks: Sequence[str],
    moved: set[str],
    position: int,
    channels: frozenset[str] | None,
) -> dict[str, StockRow]:
    """Return the stocks' rows as of the position: today's rows for those unchanged
    since, the others folded again from the ledger's events up to the position."""
    rows = stock_rows(model, [s for s in stocks if s not in moved], channels)
    if moved:
        keys: dict[str, list[str]] = {s: [] for s in sorted(moved)}
        table = m.Reaction.__table__
        with reading(model) as conn:
            query = select(table.c.stock, table.c.idempotency_key).where(
                table.c.stock.in_(sorted(moved))
            )
            for stock, key in conn.execute(query):
                keys[stock].append(key)
        with folded_as_of(ledger, keys, position) as then:
            rows.update(stock_rows(then, sorted(moved), channels))
    return rows


# --------------------------------------------------------------------------- results


def entry_keys(
    conn: Connection, entry: str | None, unit: str | None, variant: str | None
) -> list[UnitKey] | None:
    """Return the unit keys of a T2 entry (or unit), as the runs (of a variant) recorded
    them; None if no entry, unit or variant narrows the results."""
    if entry is None and variant is None:
        return None
    runs = m.Run.__table__
    sql = select(runs.c.units, runs.c.variant)
    if variant is not None:
        sql = sql.where(runs.c.variant == variant)
    keys: set[UnitKey] = set()
    entries: set[str] = set()
    for units, _ in conn.execute(sql):
        for u in units or ():
            role = str(u.get("role", ""))
            if not role.startswith("t2:"):
                continue
            entries.add(role[3:])
            if (entry is None or role[3:] == entry) and (unit is None or u["unit"] == unit):
                keys.add((u["unit"], u["unit_version"], u["unit_digest"], u["config"]))
    if not keys:
        where = f" of variant {variant!r}" if variant is not None else ""
        if variant is not None and not entries:
            raise NotFound(f"no variant {variant!r} in the ledger's runs")
        raise NotFound(f"no T2 entry {entry!r} in the runs{where} (entries: "
                       f"{', '.join(sorted(entries)) or 'none'})")  # fmt: skip
    return sorted(keys)


def variant_keys(model: ReadModel, variant: str) -> set[UnitKey]:
    """Return the unit keys of a variant's T2 entries (NotFound if no run has it)."""
    with reading(model) as conn:
        assert isinstance(conn, Connection)
        return set(entry_keys(conn, None, None, variant) or ())


def _number_at(conn: Connection, body: Any, keys: list[str]) -> ColumnElement[Any]:
    """Return the number at a path into a JSON column, NULL where it is not a number."""
    if conn.dialect.name == "postgresql":
        path: Any = bindparam(None, keys, type_=ARRAY(Text))
        node = body.op("#>")(path)
        text = body.op("#>>")(path)
        is_number = func.jsonb_typeof(node) == "number"
        return case((is_number, cast(text, Float)), else_=None)
    path = bindparam(None, "$." + ".".join(f'"{k}"' for k in keys))
    kind = func.json_type(body, path)
    return case((kind.in_(["integer", "real"]), func.json_extract(body, path)), else_=None)


def result_visible(r: Any, at: Any, channels: frozenset[str]) -> ColumnElement[bool]:
    """Return 'a result of these channels': about a state made at an alert one of them
    accepted, or, for results about no state, of a stock one of them followed."""
    sc, c = m.StateChannel.__table__, m.StockChannel.__table__
    names = sorted(channels)
    of_state = exists(select(literal(1)).where(
        sc.c.state_id == r.c.subject, sc.c.channel.in_(names), sc.c.position <= at
    ))  # fmt: skip
    not_a_state = ~exists(select(literal(1)).where(sc.c.state_id == r.c.subject))
    of_stock = exists(select(literal(1)).where(
        c.c.stock == r.c.stock, c.c.channel.in_(names), c.c.first_accepted_position <= at
    ))  # fmt: skip
    return or_(of_state, and_(not_a_state, of_stock))


def _ranked(
    conn: Connection,
    query: ResultQuery,
    keys: list[UnitKey] | None,
    channels: frozenset[str] | None,
    position: int,
) -> ColumnElement[bool] | None:
    """Return the rank index's (``rm_ranks``) rows that answer a query, where they
    answer it exactly: each stock's latest result of one unit configuration about
    states, in one channel, by a path the unit ranks by, with nothing indexed after the
    position read as of (a first page always: the index moves with the read model's
    position); else None (then the results themselves are read)."""
    if not (
        query.latest
        and query.path
        and keys
        and len(keys) == 1
        and channels
        and len(channels) == 1
        and query.stock is None
        and query.status == "ok"
    ):
        return None  # fmt: skip
    unit, version, digest, config = keys[0]
    paths, about_states = ranked_paths(unit)
    if query.path not in paths or not about_states:
        return None
    k = m.Rank.__table__
    (channel,) = channels
    mine = and_(k.c.unit == unit, k.c.unit_version == version, k.c.unit_digest == digest,
                k.c.config == config, k.c.channel == channel, k.c.path == query.path)  # fmt: skip
    newest = conn.execute(select(func.max(k.c.position))).scalar_one_or_none()
    if newest is not None and newest > position:
        return None  # a newer result since: the index may no longer hold the older ones
    return mine


def _top(
    mine: ColumnElement[bool],
    query: ResultQuery,
    scope: Scope,
    at: Any,
    pin: Cursor | None,
    limit: int,
) -> Select[Any]:
    """Return the query of a ranked page: the first ``limit`` + 1 rows of the rank index
    in order (one range of its index on value and result id), then their results."""
    k, r = m.Rank.__table__, m.Result.__table__
    desc = query.order == "desc"
    where = [mine, k.c.position <= at, k.c.value.is_not(None),
             programmes_allow(k.c.stock, at, scope.programids)]  # fmt: skip
    if query.min is not None:
        where.append(k.c.value >= query.min)
    if query.max is not None:
        where.append(k.c.value <= query.max)
    if pin is not None:
        where.append(_after([k.c.value, k.c.result_id], pin.after, [desc, False]))
    top = (
        select(k.c.result_id, k.c.value)
        .where(*where)
        .order_by(k.c.value.desc() if desc else k.c.value.asc(), k.c.result_id.asc())
        .limit(limit + 1)
        .subquery()
    )
    value = top.c.value
    return (
        select(r, value.label("sort_key"))
        .join(top, top.c.result_id == r.c.result_id)
        .order_by(value.desc() if desc else value.asc(), r.c.result_id.asc())
    )


def list_results(
    model: ReadModel,
    query: ResultQuery,
    scope: Scope | None = None,
    as_of: int | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[ResultRow]:
    """Return a page of T2 results (module doc), read as of one position."""
    scope = scope or Scope()
    limit = page_limit(limit)
    path = query.keys()
    digest = query_digest(what="results", query=query.model_dump(), scope=scope.model_dump())
    pin = None if cursor is None else Cursor.decode(cursor, digest)
    channels = scope.narrow(query.channel)
    with reading(model) as conn:
        assert isinstance(conn, Connection)
        position = pinned_position(conn, as_of, pin)
        at: Any = bindparam("at", position)
        r = m.Result.__table__
        keys = entry_keys(conn, query.entry, query.unit, query.variant)
        desc = query.order == "desc"
        ranked = _ranked(conn, query, keys, channels, position)
        if ranked is not None:  # each stock's latest value: a top-N of the rank index
            found = rows_of(conn, _top(ranked, query, scope, at, pin, limit))
            rows = [ResultRow(**row, value=row["sort_key"]) for row in found]
            keyed = [(row["sort_key"], row["result_id"]) for row in found]
            return Page[ResultRow].of(rows, keyed, limit, position, digest)
        cut: list[ColumnElement[bool]] = [r.c.position <= at, r.c.status == query.status]
        if keys is not None:
            cut.append(or_(*(and_(r.c.unit == u, r.c.unit_version == v, r.c.unit_digest == d,
                                  r.c.config == c) for u, v, d, c in keys)))  # fmt: skip
        elif query.unit is not None:
            cut.append(r.c.unit == query.unit)
        if query.stock is not None:
            cut.append(r.c.stock == query.stock)
        if channels is not None:
            cut.append(result_visible(r, at, channels))
        if scope.programids is not None:
            cut.append(programmes_allow(r.c.stock, at, scope.programids))
        chosen = select(r).where(*cut)
        if query.latest:
            rank = func.row_number().over(partition_by=r.c.stock, order_by=r.c.position.desc())
            inner = select(r, rank.label("rank")).where(*cut).subquery()
            chosen = select(*(inner.c[col.name] for col in r.columns)).where(inner.c.rank == 1)
        source = chosen.subquery()
        value = _number_at(conn, source.c.body, path) if path else source.c.position
        sql = select(*(source.c[col.name] for col in r.columns), value.label("sort_key"))
        if path:
            sql = sql.where(value.is_not(None))
            if query.min is not None:
                sql = sql.where(value >= query.min)
            if query.max is not None:
                sql = sql.where(value <= query.max)
        order_keys: list[ColumnElement[Any]] = [value, source.c.result_id]
        if pin is not None:
            sql = sql.where(_after(order_keys, pin.after, [desc, False]))
        sql = sql.order_by(value.desc() if desc else value.asc(), source.c.result_id.asc())
        found = rows_of(conn, sql.limit(limit + 1))
    rows = [ResultRow(**row, value=row["sort_key"] if path else None) for row in found]
    keyed = [(row["sort_key"], row["result_id"]) for row in found]
    return Page[ResultRow].of(rows, keyed, limit, position, digest)
