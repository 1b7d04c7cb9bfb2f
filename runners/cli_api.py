"""The commands of the HTTP API and of access: ``serve``, ``access ...`` and ``token ...``.

Grants, channel policies and tokens are appended to the ledger as events (who did it is
recorded as ``cli:USER@HOST``), so who could read a channel, from when and by whose
grant, is audited like every result.
"""

from __future__ import annotations

import datetime as dt
import getpass
import socket
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from skyledger.ledger.errors import ConfigError
from skyledger.ledger.settings import DEFAULT_LEDGER_URL
from skyledger.runners.cli_common import (
    ImportOption,
    JsonOption,
    LedgerOption,
    console,
    import_modules,
    out,
    print_json,
    read_model,
)

__all__ = ["access_app", "serve", "token_app"]

access_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None,
    help="Who may read which channel: grants (ledger events) and channel policies.",
)  # fmt: skip
token_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None,
    help="Personal access tokens for the HTTP API: made, listed, revoked.",
)  # fmt: skip


def _by() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def serve(
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    host: Annotated[str, typer.Option(help="the address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="the port (0: any free one)")] = 8000,
    oidc_issuer: Annotated[
        str | None,
        typer.Option(
            envvar="SKYLEDGER_OIDC_ISSUER",
            help="accept this OpenID Connect issuer's tokens (its URL)",
        ),
    ] = None,
    oidc_audience: Annotated[
        str | None,
        typer.Option(envvar="SKYLEDGER_OIDC_AUDIENCE", help="the audience its tokens name"),
    ] = None,
    oidc_user_claim: Annotated[
        str, typer.Option(envvar="SKYLEDGER_OIDC_USER_CLAIM", help="claim naming the user")
    ] = "preferred_username",
    oidc_groups_claim: Annotated[
        str,
        typer.Option(envvar="SKYLEDGER_OIDC_GROUPS_CLAIM", help="claim of ORG:TEAM groups"),
    ] = "groups",
    web_client_id: Annotated[
        str | None,
        typer.Option(
            envvar="SKYLEDGER_WEB_CLIENT_ID",
            help="the pages' OAuth client at the issuer (sign-in with PKCE)",
        ),
    ] = None,
    web_client_secret: Annotated[
        str | None,
        typer.Option(
            envvar="SKYLEDGER_WEB_CLIENT_SECRET", help="its secret, if it is a confidential client"
        ),
    ] = None,
    rate: Annotated[float, typer.Option(min=0.1, help="requests a second per credential")] = 50.0,
    burst: Annotated[int, typer.Option(min=1, help="requests at once per credential")] = 100,
    print_openapi: Annotated[
        bool, typer.Option("--print-openapi", help="print the API's OpenAPI schema and exit")
    ] = False,
    imports: ImportOption = None,
) -> None:
    """Serve the HTTP API (/api/v1: stocks, results, lineage, changes, diff, tokens) and
    the web pages over a ledger, beside a live run that writes it; callers read only their
    channels."""
    import json

    import uvicorn

    from skyledger.runners.oidc import OidcSettings, OidcVerifier
    from skyledger.runners.server import ApiSettings, create_app
    from skyledger.runners.web.signin import OidcClient

    import_modules(imports)  # units the diff of variants builds (their results' ids)
    settings = ApiSettings(ledger=ledger, rate=rate, burst=burst, freeze_heap=True)
    verifier = web = None
    if web_client_id is not None and oidc_issuer is None:
        raise ConfigError("--web-client-id: the pages sign in at an issuer: give --oidc-issuer")
    if oidc_issuer is not None:
        if oidc_audience is None:
            raise ConfigError("--oidc-audience: give the audience the issuer's tokens name")
        audiences = tuple(dict.fromkeys(a for a in (oidc_audience, web_client_id) if a))
        verifier = OidcVerifier(OidcSettings(
            issuer=oidc_issuer, audience=audiences, user_claim=oidc_user_claim,
            groups_claim=oidc_groups_claim,
        ))  # fmt: skip
        if web_client_id is not None:
            web = OidcClient(oidc_issuer, web_client_id, web_client_secret)
    app = create_app(settings, verifier, web)
    if print_openapi:
        print(json.dumps(app.openapi(), indent=2, sort_keys=True))
        return
    read_model(ledger)[0].close()  # refuse a missing ledger before listening
    console.print(f"serving {escape(ledger)} on http://{host}:{port}/ (the pages) and "
                  f"http://{host}:{port}/api/v1", highlight=False)  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level="warning")


@access_app.command("grant")
def grant(
    channel: Annotated[str, typer.Argument(help="the channel")],
    member: Annotated[str, typer.Argument(help="user:NAME, org:NAME or team:ORG/TEAM")],
    reason: Annotated[str, typer.Option(help="why, for the record")] = "",
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
) -> None:
    """Let a member read a channel (appends AccessGranted)."""
    from skyledger.ledger.access import AccessGranted, check_member

    with read_model(ledger)[0] as opened:
        opened.append(
            [
                AccessGranted(
                    stream=f"access:{channel}",
                    channel=channel,
                    member=check_member(member),
                    by=_by(),
                    reason=reason,
                )
            ]
        )
    out.print(f"granted {member} access to {channel}", highlight=False)


@access_app.command("revoke")
def revoke(
    channel: Annotated[str, typer.Argument(help="the channel")],
    member: Annotated[str, typer.Argument(help="the member granted before")],
    reason: Annotated[str, typer.Option(help="why, for the record")] = "",
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
) -> None:
    """Stop a member reading a channel (appends AccessRevoked)."""
    from skyledger.ledger.access import AccessRevoked, check_member
    from skyledger.projections.access import grants

    opened, model = read_model(ledger)
    with opened, model:
        if not any(g.member == member for g in grants(model, channel)):
            raise ConfigError(f"{member} has no access to {channel} to revoke")
        opened.append(
            [
                AccessRevoked(
                    stream=f"access:{channel}",
                    channel=channel,
                    member=check_member(member),
                    by=_by(),
                    reason=reason,
                )
            ]
        )
    out.print(f"revoked {member}'s access to {channel}", highlight=False)


@access_app.command("policy")
def policy(
    channel: Annotated[str, typer.Argument(help="the channel")],
    public: Annotated[
        bool, typer.Option("--public/--members-only", help="readable without a credential")
    ] = False,
    programids: Annotated[
        str | None,
        typer.Option(help="ZTF programids its readers see, e.g. 1 (public data) or 1,2"),
    ] = None,
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
) -> None:
    """Set a channel's reading policy (appends ChannelPolicySet)."""
    from skyledger.ledger.access import ChannelPolicySet

    ids = None
    if programids is not None:
        try:
            ids = tuple(sorted({int(p) for p in programids.split(",") if p.strip()}))
        except ValueError:
            raise ConfigError(f"--programids {programids!r}: give numbers, e.g. 1,2") from None
    with read_model(ledger)[0] as opened:
        opened.append(
            [
                ChannelPolicySet(
                    stream=f"access:{channel}",
                    channel=channel,
                    public=public,
                    programids=ids,
                    by=_by(),
                )
            ]
        )
    shown = "all" if ids is None else ", ".join(map(str, ids))
    out.print(
        f"{channel}: {'public' if public else 'members only'}, programids {shown}", highlight=False
    )


@access_app.command("list")
def list_access(
    channel: Annotated[str | None, typer.Option(help="only this channel")] = None,
    every: Annotated[bool, typer.Option("--all", help="revoked grants too")] = False,
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
) -> None:
    """List the grants (and policies) the ledger records."""
    from skyledger.projections.access import grants, policies

    opened, model = read_model(ledger)
    with opened, model:
        found = grants(model, channel, current=not every)
        rules = policies(model)
    if as_json:
        print_json(
            {
                "grants": [g.model_dump() for g in found],
                "policies": [p.model_dump() for p in rules.values()],
            }
        )
        return
    table = Table("channel", "member", "granted at", "by", "revoked at", title="grants")
    for g in found:
        table.add_row(
            escape(g.channel),
            escape(g.member),
            str(g.granted_position),
            escape(g.granted_by),
            str(g.revoked_position or "-"),
        )
    out.print(table)
    for p in rules.values():
        ids = "all" if p.programids is None else ", ".join(map(str, p.programids))
        out.print(
            f"{p.channel}: {'public' if p.public else 'members only'}, programids {ids}",
            highlight=False,
        )


@token_app.command("create")
def create_token(
    owner: Annotated[str, typer.Option("--for", help="the identity it acts as: user:NAME")],
    channel: Annotated[
        list[str] | None, typer.Option("--channel", help="limited to this channel (repeat)")
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="valid for this many days")] = 90,
    name: Annotated[str, typer.Option(help="a name to tell it by")] = "",
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
) -> None:
    """Make a personal access token (printed once: keep it; only its digest is stored)."""
    from skyledger.ledger.access import TokenIssued, check_member
    from skyledger.projections.access import make_token, token_digest

    token, token_id = make_token()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    channels = None if not channel else tuple(sorted(set(channel)))
    with read_model(ledger)[0] as opened:
        opened.append([TokenIssued(
            stream=f"token:{token_id}", token_id=token_id, digest=token_digest(token),
            owner=check_member(owner), name=name, channels=channels, expires=expires, by=_by(),
        )])  # fmt: skip
    if as_json:
        print_json({"token": token, "token_id": token_id, "expires": expires.isoformat()})
        return
    out.print(token, highlight=False, soft_wrap=True)
    console.print(f"token {token_id} for {owner}, until {expires:%Y-%m-%d %H:%M} UTC: shown "
                  "once, keep it", highlight=False)  # fmt: skip


@token_app.command("list")
def list_tokens(
    owner: Annotated[str | None, typer.Option("--for", help="only this identity's")] = None,
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
) -> None:
    """List the tokens (never their secrets)."""
    from skyledger.projections.access import tokens

    opened, model = read_model(ledger)
    with opened, model:
        found = tokens(model, owner=owner)
    if as_json:
        print_json([t.model_dump(exclude={"digest"}) for t in found])
        return
    table = Table(
        "token", "for", "name", "channels", "expires", "last used", "revoked", title="tokens"
    )
    for t in found:
        table.add_row(
            t.token_id,
            escape(t.owner),
            escape(t.name),
            escape(", ".join(t.channels) if t.channels else "all theirs"),
            f"{t.expires:%Y-%m-%d %H:%M}",
            "never" if t.last_used is None else f"{t.last_used:%Y-%m-%d %H:%M}",
            "yes" if t.revoked_position else "no",
        )
    out.print(table)


@token_app.command("revoke")
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="the token's id (tokens list shows it)")],
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
) -> None:
    """Revoke a token (appends TokenRevoked)."""
    from skyledger.ledger.access import TokenRevoked
    from skyledger.projections.access import tokens

    opened, model = read_model(ledger)
    with opened, model:
        if not tokens(model, token_id=token_id):
            raise ConfigError(f"no token {token_id!r}")
        opened.append([TokenRevoked(stream=f"token:{token_id}", token_id=token_id, by=_by())])
    out.print(f"revoked token {token_id}", highlight=False)
