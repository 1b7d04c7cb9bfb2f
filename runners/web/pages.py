"""The web pages, served by the API's process and read through the same query layer
under the same access control: a page shows what its viewer's credential may read,
and nothing else (see :mod:`runners.web.signin` for how a browser holds one).

    /                       channels, stock search, cone search
    /signin, /signout       a personal access token, or the issuer's sign-in (PKCE)
    /channels/{channel}     a channel's stocks ranked by a T2 value, with filters
    /stocks                 stocks by cone, channel and last change
    /stocks/{stock}         light curve, position, cutouts, results per variant, ...
    /lineage/{ident}        why a result, state, reaction or datapoint is there
    /compare                two variants side by side
    /status                 the ledger's head, the read model, each tier's lag
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from skyledger.ledger.errors import NotFound, QueryError
from skyledger.projections.diff import scoped_diff
from skyledger.projections.listing import ResultQuery, StockQuery, list_results, list_stocks
from skyledger.projections.overview import (
    alerts_of,
    channels_of,
    rank_options,
    stocks_starting,
    variant_choices,
    variants_by_key,
)
from skyledger.projections.queries import ResultRow, list_runs
from skyledger.projections.visibility import visible_lineage, visible_rows, visible_stock
from skyledger.runners.api.auth import Caller
from skyledger.runners.api.problems import Problem
from skyledger.runners.api.tokens import NewToken, make_own_token, own_tokens, revoke_own_token
from skyledger.runners.replay import side_of
from skyledger.runners.show_diff import compared_line, show_change
from skyledger.runners.web import cutouts as cut
from skyledger.runners.web.lightcurve import draw
from skyledger.runners.web.signin import (
    FLOW_COOKIE,
    FLOW_MAX_AGE_S,
    SESSION_COOKIE,
    Flow,
    safe_next,
)
from skyledger.runners.web.status import lags_of_runs

__all__ = ["TEMPLATES", "page_error", "router"]

router = APIRouter(include_in_schema=False)
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
_ZTF_NAME = re.compile(r"^ZTF\d{2}[a-z]{7}$")
PAGE_ROWS = 50


def _brief(value: Any, width: int = 200) -> str:
    """A value as one line of JSON, cut at ``width`` characters."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(", ", ": "))
    return text if len(text) <= width else text[: width - 1] + "…"


TEMPLATES.env.filters["brief"] = _brief


def served(request: Request) -> Any:
    """Return what the app serves (its ledger, read model, authenticator, sign-in)."""
    return request.app.state.served


def viewer(request: Request) -> Caller:
    """Return the viewer of a page: the credential its session cookie holds, checked as
    the API checks a bearer token (a 401 sends the browser to sign in)."""
    found: Caller = served(request).auth.of(request, request.cookies.get(SESSION_COOKIE) or None)
    return found


Viewer = Annotated[Caller, Depends(viewer)]


def same_origin(request: Request) -> None:
    """Refuse a form posted from another site (beside the cookies' SameSite=Lax)."""
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != str(request.base_url).rstrip("/"):
        raise Problem(403, "Forbidden", "a form of another site cannot post here")


def render(request: Request, name: str, who: Caller | None, status: int = 200,
           **context: Any) -> HTMLResponse:  # fmt: skip
    """Return a page of the templates, with what every page shows (who is signed in)."""
    users = sorted(i for i in who.identities if i.startswith("user:")) if who else []
    named = users[0] if users else (sorted(who.identities)[0] if who and who.identities else None)
    context |= {"who": who, "who_name": named or (who.kind if who else None),
                "signin_oidc": served(request).web_client is not None}  # fmt: skip
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status)


# --------------------------------------------------------------------- signing in


@router.get("/signin")
def signin_page(request: Request, next: str | None = None) -> Response:
    """Ask for a personal access token, or offer the issuer's sign-in."""
    return render(request, "signin.html", None, next=safe_next(next), why=None)


@router.post("/signin", dependencies=[Depends(same_origin)])
def signin_token(
    request: Request, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/"
) -> Response:
    """Sign in with a personal access token (or an id token): checked now, kept in a
    cookie, checked again on every page."""
    if not token.strip():
        return render(request, "signin.html", None, 401, next=safe_next(next),
                      why="give a token")  # fmt: skip
    try:
        served(request).auth.of(request, token.strip())
    except Problem as refused:
        return render(request, "signin.html", None, 401, next=safe_next(next), why=refused.detail)
    return _signed_in(request, token.strip(), safe_next(next))


@router.get("/signin/oidc")
def signin_oidc(request: Request, next: str | None = None) -> Response:
    """Send the browser to the issuer's sign-in (authorization code with PKCE)."""
    client = served(request).web_client
    if client is None:
        raise NotFound("this server signs in with personal access tokens only (no issuer set)")
    flow = Flow.new(next)
    answer = RedirectResponse(client.authorize_url(flow, _callback(request)), status_code=303)
    answer.set_cookie(FLOW_COOKIE, flow.cookie(), max_age=FLOW_MAX_AGE_S, httponly=True,
                      samesite="lax", secure=_secure(request), path="/signin")  # fmt: skip
    return answer


@router.get("/signin/callback")
def signin_callback(
    request: Request, code: str | None = None, state: str | None = None,
    error: str | None = None, error_description: str | None = None,
) -> Response:  # fmt: skip
    """Trade the issuer's code for an id token, check it, and sign the browser in."""
    s = served(request)
    flow = Flow.of_cookie(request.cookies.get(FLOW_COOKIE))
    if error is not None:
        why = f"the issuer said: {error}" + (f" ({error_description})" if error_description else "")
    elif flow is None or s.web_client is None:
        why = "no sign-in was under way here (or it took over ten minutes): try again"
    elif state != flow.state or not code:
        why = "the sign-in's state does not match: try again"
    else:
        id_token = s.web_client.exchange(code, flow, _callback(request))
        try:
            principal = s.auth.oidc.verify(id_token)
        except Exception as exc:  # the verifier's reason, never the token
            why = f"the issuer's id token was refused: {exc}"
        else:
            if principal.nonce != flow.nonce:
                why = "the id token's nonce does not match this sign-in"
            else:
                return _signed_in(request, id_token, flow.next, principal.expires_at)
    answer = render(request, "signin.html", None, 401, next=flow.next if flow else "/", why=why)
    answer.delete_cookie(FLOW_COOKIE, path="/signin")
    return answer


@router.post("/signout", dependencies=[Depends(same_origin)])
def signout(request: Request) -> Response:
    """Forget the browser's credential."""
    answer = RedirectResponse("/signin", status_code=303)
    answer.delete_cookie(SESSION_COOKIE, path="/")
    return answer


def _callback(request: Request) -> str:
    return str(request.url_for("signin_callback"))


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _signed_in(request: Request, credential: str, next_page: str,
               expires: dt.datetime | None = None) -> Response:  # fmt: skip
    answer = RedirectResponse(next_page, status_code=303)
    answer.set_cookie(SESSION_COOKIE, credential, httponly=True, samesite="lax",
                      secure=_secure(request), path="/", expires=expires)  # fmt: skip
    answer.delete_cookie(FLOW_COOKIE, path="/signin")
    return answer


# --------------------------------------------------------------------- reading


@router.get("/")
def home(request: Request, who: Viewer, find: str | None = None) -> Response:
    """The viewer's channels, and a search by stock id or prefix."""
    s = served(request)
    found: list[str] | None = None
    if find:
        found = stocks_starting(s.model, find.strip(), who.scope)
        if len(found) == 1:
            return RedirectResponse(str(request.url_for("stock_page", stock=found[0])), 303)
    return render(request, "home.html", who, channels=channels_of(s.model, who.scope),
                  find=find, found=found)  # fmt: skip


def _number(name: str, value: str | None) -> float | None:
    """Return a form field as a number (an empty field: None), or refuse it by name."""
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise QueryError(f"{name}: {value!r} is not a number") from None


@router.get("/stocks")
def stocks_page(
    request: Request, who: Viewer, channel: str | None = None, ra: str | None = None,
    dec: str | None = None, radius: str | None = None, since: str | None = None,
    order: str | None = None, variant: str | None = None, cursor: str | None = None,
) -> Response:  # fmt: skip
    """Stocks by cone, channel, last change and variant, a pinned page at a time."""
    s = served(request)
    after = _number("since", since)
    asked = {"channel": channel or None, "ra": _number("RA", ra), "dec": _number("Dec", dec),
             "radius_arcsec": _number("radius", radius),
             "since": None if after is None else int(after), "order": order or None,
             "variant": variant or None}  # fmt: skip
    page = list_stocks(s.model, s.ledger, StockQuery.parse(asked), scope=who.scope,
                       cursor=cursor, limit=PAGE_ROWS)  # fmt: skip
    return render(request, "stocks.html", who, page=page, asked=asked,
                  more=_more(request, page.next))  # fmt: skip


@router.get("/channels/{channel}")
def channel_page(
    request: Request, who: Viewer, channel: str,
    rank: Annotated[str | None, Query(description="UNIT:PATH")] = None,
    min: str | None = None, max: str | None = None,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    cursor: str | None = None,
) -> Response:  # fmt: skip
    """A channel's stocks ranked by a T2 value (each stock's latest result)."""
    s = served(request)
    low, high = _number("from", min), _number("to", max)
    who.scope.narrow(channel)  # an unknown or forbidden channel: 404
    options = rank_options(s.model, channel)
    chosen = _rank(rank, options)
    page = None
    if chosen is not None:
        asked = {"unit": chosen[0], "path": chosen[1], "channel": channel, "min": low,
                 "max": high, "order": order, "latest": True}  # fmt: skip
        query = ResultQuery.parse(asked)
        page = list_results(s.model, query, scope=who.scope, cursor=cursor, limit=PAGE_ROWS)
    return render(request, "channel.html", who, channel=channel, options=options,
                  chosen=chosen, min=low, max=high, order=order, page=page,
                  more=_more(request, page.next if page else None))  # fmt: skip


def _rank(rank: str | None, options: list[tuple[str, str]]) -> tuple[str, str] | None:
    if rank is None:
        return options[0] if options else None
    unit, _, path = rank.partition(":")
    if not unit or not path:
        raise QueryError(f"rank {rank!r}: give UNIT:PATH, e.g. T2CandidateScore:score")
    return unit, path


def _more(request: Request, cursor: str | None) -> str | None:
    return None if cursor is None else str(request.url.include_query_params(cursor=cursor))


@router.get("/stocks/{stock}")
def stock_page(request: Request, who: Viewer, stock: str) -> Response:
    """A stock: position, light curve, cutouts, results per variant, reactions, journal."""
    s = served(request)
    view = visible_stock(s.model, s.ledger, stock, who.scope)
    if view is None:
        raise NotFound(f"no stock {stock!r}")
    points = sorted((*view.datapoints, *view.upper_limits),
                    key=lambda d: (d.jd is None, d.jd or 0.0))  # fmt: skip
    curve = draw(points)
    alert = _cutout_alert(request, who, stock)
    by_key: dict[tuple[str, str, str, str], list[ResultRow]] = defaultdict(list)
    for r in view.results:
        by_key[r.key()].append(r)
    variants = variants_by_key(s.model)
    groups = [(key, variants.get(key, []), rows) for key, rows in by_key.items()]
    return render(request, "stock.html", who, view=view, points=points, curve=curve, alert=alert,
                  groups=groups, links=_links(stock, view.stock.ra, view.stock.dec),
                  radec=_sexagesimal(view.stock.ra, view.stock.dec))  # fmt: skip


def _cutout_alert(request: Request, who: Caller, stock: str) -> str | None:
    """Return the latest alert of a stock whose cutouts the viewer may see."""
    s = served(request)
    for seen in alerts_of(s.model, stock, limit=5):
        record = _record(s, seen.digest)
        if record is not None and _may_see(who, record) and cut.cutout_fits(record, "science"):
            return seen.event_id
    return None


def _record(s: Any, digest: str) -> Any:
    packet = s.ledger.packet(digest)
    return None if packet is None else cut.record_of(packet)


def _may_see(who: Caller, record: Any) -> bool:
    candidate = record.get("candidate")
    return not isinstance(candidate, dict) or who.scope.may_see(candidate)


@router.get("/stocks/{stock}/cutouts/{alert}/{kind}.png")
def cutout(request: Request, who: Viewer, stock: str, alert: str, kind: str) -> Response:
    """One cutout of one alert of a stock the viewer reads, as a PNG."""
    s = served(request)
    if kind not in cut.KINDS or stock not in visible_rows(s.model, [stock], who.scope):
        raise NotFound(f"no cutout {kind!r} of {stock!r}")
    seen = alerts_of(s.model, stock, limit=1, event_id=alert)
    record = _record(s, seen[0].digest) if seen else None
    fits = None if record is None or not _may_see(who, record) else cut.cutout_fits(record, kind)
    if fits is None:
        raise NotFound(f"no cutout {kind!r} in alert {alert!r} of {stock!r}")
    return Response(cut.png_of(fits), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=86400"})  # fmt: skip


def _links(stock: str, ra: float | None, dec: float | None) -> list[tuple[str, str]]:
    """Return the object's pages elsewhere: TNS by position, Fink and ALeRCE by ZTF name."""
    links = []
    if ra is not None and dec is not None:
        links.append(("TNS", f"https://www.wis-tns.org/search?ra={ra:.6f}&decl={dec:.6f}"
                             "&radius=5&coords_unit=arcsec"))  # fmt: skip
    if _ZTF_NAME.match(stock):
        links += [("Fink", f"https://fink-portal.org/{stock}"),
                  ("ALeRCE", f"https://alerce.online/object/{stock}")]  # fmt: skip
    return links


def _sexagesimal(ra: float | None, dec: float | None) -> str | None:
    if ra is None or dec is None:
        return None
    h = ra / 15.0
    hh, mm = int(h), int((h % 1) * 60)
    ss = ((h % 1) * 60 % 1) * 60
    sign, d = ("-" if dec < 0 else "+"), abs(dec)
    dd, dm = int(d), int((d % 1) * 60)
    ds = ((d % 1) * 60 % 1) * 60
    return f"{hh:02d}:{mm:02d}:{ss:05.2f} {sign}{dd:02d}:{dm:02d}:{ds:04.1f}"


@router.get("/lineage/{ident}")
def lineage_page(request: Request, who: Viewer, ident: str) -> Response:
    """Why something is in the ledger, as a tree down to the packets."""
    s = served(request)
    found = visible_lineage(s.model, s.ledger, ident, who.scope)
    if found is None:
        raise NotFound(f"nothing has the id {ident!r}")
    return render(request, "lineage.html", who, found=found, ident=ident)


@router.get("/compare")
def compare_page(
    request: Request, who: Viewer, a: str | None = None, b: str | None = None
) -> Response:  # fmt: skip
    """Two variants (or runs) compared over the viewer's channels, as ``skyledger diff``."""
    s = served(request)
    choices = variant_choices(s.model, who.scope)
    found = lines = None
    if a and b:
        side_a, side_b = (side_of(s.ledger, spec, job_files=False, scope=who.scope)[0]
                          for spec in (a, b))  # fmt: skip
        found = scoped_diff(s.ledger, side_a, side_b, who.scope)
        lines = {c.stock + c.entry: show_change(c) for c in found.changes}
    return render(request, "compare.html", who, choices=choices, a=a, b=b, found=found,
                  lines=lines, compared=compared_line(found) if found else "")  # fmt: skip


@router.get("/tokens")
def tokens_page(request: Request, who: Viewer) -> Response:
    """The viewer's own personal access tokens, and a form to make one."""
    return _tokens(request, who)


def _tokens(request: Request, who: Caller, made: Any = None, status: int = 200) -> Response:
    s = served(request)
    mine = own_tokens(s.model, who)
    return render(request, "tokens.html", who, status, tokens=mine, made=made,
                  channels=sorted(who.scope.channels or ()),
                  may_make=who.kind == "oidc")  # fmt: skip


@router.post("/tokens", dependencies=[Depends(same_origin)])
def make_token_page(
    request: Request, who: Viewer, name: Annotated[str, Form()] = "",
    days: Annotated[int, Form()] = 90, channel: Annotated[list[str] | None, Form()] = None,
) -> Response:  # fmt: skip
    """Make a token for the viewer (signed in at the issuer) and show it once."""
    s = served(request)
    wanted = NewToken(name=name, days=days, channels=channel or None)
    made = make_own_token(s.ledger, s.model, who, wanted, "pages")
    answer = _tokens(request, who, made, 201)
    answer.headers["Cache-Control"] = "no-store"  # the secret is on this page only
    return answer


@router.post("/tokens/{token_id}/revoke", dependencies=[Depends(same_origin)])
def revoke_token_page(request: Request, who: Viewer, token_id: str) -> Response:
    """Revoke one of the viewer's tokens."""
    s = served(request)
    revoke_own_token(s.ledger, s.model, who, token_id)
    return RedirectResponse("/tokens", status_code=303)


@router.get("/status")
def status_page(request: Request, who: Viewer) -> Response:
    """The ledger's head, how far this server's read model follows it, each running
    run's tiers and their lag."""
    s = served(request)
    runs = list_runs(s.model, 50)
    operator = who.scope.channels is None
    return render(request, "status.html", who, head=s.ledger.head(),
                  read_model=s.model.position(), runs=runs, operator=operator,
                  lags=lags_of_runs(s.ledger, runs))  # fmt: skip


def page_error(request: Request, found: Problem) -> Response:
    """Answer a page's error: without a good credential, the way to sign in (saying why
    a credential held was refused); otherwise a page saying what went wrong."""
    if found.status == 401:
        held = request.cookies.get(SESSION_COOKIE)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        answer = render(request, "signin.html", None, 401, next=safe_next(target),
                        why=found.detail if held else None)  # fmt: skip
        if held:
            answer.delete_cookie(SESSION_COOKIE, path="/")
        return answer
    answer = render(request, "error.html", None, found.status, problem=found)
    for name, value in found.headers.items():
        answer.headers[name] = value
    return answer
