"""Reading the access the ledger records: a caller's scope, grants, policies and tokens.

A caller's channels are those one of its identities was granted (and not since revoked),
and every public channel; a personal access token narrows them to the channels it names.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Column, MetaData, String, Table, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from skyledger.projections import models as m
from skyledger.projections.queries import Source, reading, rows_of
from skyledger.projections.scope import Scope

__all__ = [
    "TOKEN_PREFIX",
    "TOKEN_USE",
    "USAGE",
    "GrantRow",
    "PolicyRow",
    "TokenRow",
    "TokenUse",
    "grants",
    "make_token",
    "matches",
    "policies",
    "public_scope",
    "scope_of",
    "token_digest",
    "token_id_of",
    "tokens",
]

TOKEN_PREFIX = "slpat_"
"""How a skyledger personal access token starts (so that scanners recognise one)."""


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class GrantRow(_Row):
    """A member's access to a channel."""

    channel: str
    member: str
    granted_position: int
    granted_by: str
    revoked_position: int | None
    revoked_by: str | None


class PolicyRow(_Row):
    """A channel's reading policy."""

    channel: str
    public: bool
    programids: list[int] | None
    position: int
    set_by: str


class TokenRow(_Row):
    """A personal access token, without its secret."""

    token_id: str
    digest: str
    owner: str
    name: str
    channels: list[str] | None
    expires: dt.datetime
    issued_position: int
    issued_by: str
    revoked_position: int | None
    revoked_by: str | None
    identities: list[str] | None = None
    last_used: dt.datetime | None = None

    def usable(self, now: dt.datetime) -> str | None:
        """Return why the token may not be used now, None if it may."""
        if self.revoked_position is not None:
            return "revoked"
        if now >= self.expires:
            return "expired"
        return None


def make_token() -> tuple[str, str]:
    """Return a new token (shown once) and its public id."""
    token_id = secrets.token_hex(8)
    return f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}", token_id


def token_id_of(token: str) -> str | None:
    """Return the public id a token carries, None if it is not one of ours."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    token_id, _, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if len(token_id) != 16 or not secret:
        return None
    return token_id


def token_digest(token: str) -> str:
    """Return the SHA-256 digest a token is stored as."""
    return hashlib.sha256(token.encode()).hexdigest()


def matches(row: TokenRow, token: str) -> bool:
    """Return True if a token is the one a row records (constant-time comparison)."""
    return hmac.compare_digest(row.digest, token_digest(token))


def grants(source: Source, channel: str | None = None, current: bool = True) -> list[GrantRow]:
    """Return the grants (of one channel), only those not revoked if ``current``."""
    table = m.Grant.__table__
    query = select(table).order_by(table.c.channel, table.c.member)
    if channel is not None:
        query = query.where(table.c.channel == channel)
    if current:
        query = query.where(table.c.revoked_position.is_(None))
    with reading(source) as conn:
        return [GrantRow(**r) for r in rows_of(conn, query)]


def policies(source: Source) -> dict[str, PolicyRow]:
    """Return every channel's policy, by channel."""
    with reading(source) as conn:
        rows = rows_of(conn, select(m.ChannelPolicy.__table__))
    return {r["channel"]: PolicyRow(**r) for r in rows}


USAGE = MetaData()
"""Tables of how the API is used, kept beside the read model (not folded from the
ledger: a token's use is not a fact of the ledger, and would be an event per request)."""
TOKEN_USE = Table(
    "skyledger_token_use", USAGE,
    Column("token_id", String, primary_key=True),
    Column("last_used", m.UTCDateTime, nullable=False),
)  # fmt: skip
_USE_EVERY_S = 60.0  # a token's last use is written at most this often


def tokens(source: Source, owner: str | None = None, token_id: str | None = None) -> list[TokenRow]:
    """Return the tokens (of one owner, or the one with an id), the latest first, each
    with when it was last used (to the minute; None: never, or before it was kept)."""
    table = m.Token.__table__
    with reading(source) as conn:
        kept = inspect(conn.connection() if isinstance(conn, Session) else conn)
        if kept.has_table(TOKEN_USE.name):  # a ledger never served has none
            query = select(table, TOKEN_USE.c.last_used).outerjoin(
                TOKEN_USE, TOKEN_USE.c.token_id == table.c.token_id
            )
        else:
            query = select(table)
        query = query.order_by(table.c.issued_position.desc())
        if owner is not None:
            query = query.where(table.c.owner == owner)
        if token_id is not None:
            query = query.where(table.c.token_id == token_id)
        return [TokenRow(**r) for r in rows_of(conn, query)]


class TokenUse:
    """Records when tokens were last used, at most once a minute each (in one process)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._written: dict[str, dt.datetime] = {}
        with model.engine.begin() as conn:
            USAGE.create_all(conn)

    def used(self, token_id: str, now: dt.datetime) -> None:
        """Note a use of a token now."""
        last = self._written.get(token_id)
        if last is not None and (now - last).total_seconds() < _USE_EVERY_S:
            return
        self._written[token_id] = now
        with contextlib.suppress(IntegrityError), self.model.engine.begin() as conn:
            updated = conn.execute(
                TOKEN_USE.update().where(TOKEN_USE.c.token_id == token_id).values(last_used=now)
            )
            if updated.rowcount == 0:  # (another server may insert it first: then it has it)
                conn.execute(TOKEN_USE.insert().values(token_id=token_id, last_used=now))


def public_scope(source: Source) -> Scope:
    """Return the scope of a caller without a credential: the public channels."""
    policy = policies(source)
    public = frozenset(c for c, p in policy.items() if p.public)
    return Scope(channels=public, programids=_programids(policy, public))


def scope_of(source: Source, identities: frozenset[str], limit: Any = None) -> Scope:
    """Return the scope of a caller with these identities: the channels granted to one of
    them and the public ones, narrowed to ``limit`` (a token's channels) if given."""
    policy = policies(source)
    granted = {g.channel for g in grants(source) if g.member in identities}
    channels = frozenset(granted) | {c for c, p in policy.items() if p.public}
    if limit is not None:
        channels &= frozenset(limit)
    return Scope(channels=channels, programids=_programids(policy, channels))


def _programids(policy: dict[str, PolicyRow], channels: frozenset[str]) -> frozenset[int] | None:
    """Return the ZTF programmes readers of these channels see: every programme if one
    of them has no limit (or no policy), else those any of them names."""
    found: set[int] = set()
    for channel in channels:
        row = policy.get(channel)
        if row is None or row.programids is None:
            return None
        found.update(row.programids)
    return frozenset(found)
