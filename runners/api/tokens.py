"""A signed-in person's own personal access tokens: made (shown once), listed, revoked,
as ledger events. The API's ``/api/v1/tokens`` and the pages' ``/tokens`` both use these."""

from __future__ import annotations

import datetime as dt
import getpass
from dataclasses import dataclass

from pydantic import BaseModel, Field

from skyledger.ledger import Ledger
from skyledger.ledger.access import TokenIssued, TokenRevoked
from skyledger.ledger.errors import NotFound
from skyledger.projections.access import TokenRow, make_token, token_digest, tokens
from skyledger.projections.readmodel import ReadModel
from skyledger.runners.api.auth import Caller
from skyledger.runners.api.problems import Problem

__all__ = [
    "MAX_TOKEN_DAYS",
    "Issued",
    "NewToken",
    "TokenShown",
    "make_own_token",
    "own_tokens",
    "revoke_own_token",
]

MAX_TOKEN_DAYS = 366


class NewToken(BaseModel):
    """A personal access token to make for the caller."""

    name: str = Field(default="", max_length=100)
    channels: list[str] | None = Field(default=None, description="None: all the caller's")
    days: int = Field(default=90, ge=1, le=MAX_TOKEN_DAYS, description="valid for")


@dataclass(frozen=True)
class Issued:
    """A token made: its secret (shown once, never again), id, expiry and channels."""

    token: str
    token_id: str
    expires: dt.datetime
    channels: list[str] | None


class TokenShown(BaseModel):
    """A token as its owner sees it (never its secret)."""

    token_id: str
    name: str
    channels: list[str] | None
    expires: dt.datetime
    revoked: bool
    last_used: dt.datetime | None = Field(description="to the minute; None: not yet")


def make_own_token(
    ledger: Ledger, model: ReadModel, who: Caller, wanted: NewToken, where: str
) -> Issued:
    """Make a token for a caller signed in with its identity provider (403 otherwise;
    a token cannot make tokens), limited to some of its channels if asked."""
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
    ledger.append([TokenIssued(
        stream=f"token:{token_id}", token_id=token_id, digest=token_digest(token),
        owner=users[0], name=wanted.name, channels=channels, expires=expires,
        by=f"{users[0]} (self, {where})", identities=tuple(sorted(who.identities)),
    )])  # fmt: skip
    model.catch_up(ledger)
    return Issued(token, token_id, expires, None if channels is None else list(channels))


def _owned(model: ReadModel, who: Caller) -> list[TokenRow]:
    rows: list[TokenRow] = []
    for identity in sorted(who.identities):
        if identity.startswith("user:"):
            rows += tokens(model, owner=identity)
    return rows


def own_tokens(model: ReadModel, who: Caller) -> list[TokenShown]:
    """Return the caller's own tokens."""
    return [TokenShown(token_id=t.token_id, name=t.name, channels=t.channels, expires=t.expires,
                       revoked=t.revoked_position is not None, last_used=t.last_used)
            for t in _owned(model, who)]  # fmt: skip


def revoke_own_token(ledger: Ledger, model: ReadModel, who: Caller, token_id: str) -> None:
    """Revoke one of the caller's own tokens (404 for any other)."""
    if not any(t.token_id == token_id for t in _owned(model, who)):
        raise NotFound(f"no token {token_id!r}")
    by = ", ".join(sorted(who.identities)) or getpass.getuser()
    ledger.append([TokenRevoked(stream=f"token:{token_id}", token_id=token_id, by=by)])
    model.catch_up(ledger)
