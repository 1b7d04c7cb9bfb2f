"""Who is calling: a personal access token, an OpenID Connect bearer token, or nobody.

``Authenticator.caller(request)`` returns the caller's :class:`Caller` (its identities
and its scope: the channels it may read) or raises a 401 problem; a caller over its
rate gets a 429 with ``Retry-After``. Denials are logged with the reason and the
token's public id, never the secret.

A credential checked once is remembered (by its SHA-256, never itself) with its scope
while the read model stays at the same position, for at most a minute and not past its
expiry: a grant, revocation or token event moves the position, so it is checked again.
Refusals are not remembered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from fastapi import Request
from pydantic import BaseModel, ConfigDict

from skyledger.projections.access import (
    TokenUse,
    matches,
    public_scope,
    scope_of,
    token_id_of,
    tokens,
)
from skyledger.projections.readmodel import ReadModel
from skyledger.projections.scope import Scope
from skyledger.runners.api.problems import Problem

__all__ = ["Authenticator", "Caller", "IdentityVerifier", "RateLimit"]

log = logging.getLogger("skyledger.api")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="skyledger"'}
_REMEMBER = dt.timedelta(seconds=60)  # a checked credential's scope, at most this long
_REMEMBERED = 10_000  # credentials remembered at most (the least recently used go)
_BUCKETS = 10_000  # rate buckets kept before the full ones are forgotten


class IdentityVerifier(Protocol):
    """Checks a bearer token of an identity provider (runners.oidc.OidcVerifier)."""

    def verify(self, token: str) -> Any:
        """Return the principal (with ``identities`` and ``subject``) or raise."""


class Caller(BaseModel):
    """A caller: how it proved who it is, its identities and the channels it may read."""

    model_config = ConfigDict(frozen=True)

    kind: str  # token | oidc | anonymous
    key: str  # what its rate is counted by
    identities: frozenset[str] = frozenset()
    scope: Scope
    token_id: str | None = None


class RateLimit:
    """A token bucket per caller: ``rate`` requests a second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one request from a caller's bucket; return 0, or the seconds to wait."""
        now = self.clock()
        with self._lock:
            if len(self._buckets) >= _BUCKETS and key not in self._buckets:
                self._prune(now)
            level, then = self._buckets.get(key, (float(self.burst), now))
            level = min(float(self.burst), level + (now - then) * self.rate)
            if level >= 1.0:
                self._buckets[key] = (level - 1.0, now)
                return 0.0
            self._buckets[key] = (level, now)
            return (1.0 - level) / self.rate

    def __len__(self) -> int:
        """Return how many callers' buckets are kept."""
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        """Forget the buckets that have filled up again (as good as new ones)."""
        full = [k for k, (level, then) in self._buckets.items()
                if level + (now - then) * self.rate >= self.burst]  # fmt: skip
        for k in full:
            del self._buckets[k]


class Authenticator:
    """Turns a request's credential into a :class:`Caller`."""

    def __init__(self, model: ReadModel, oidc: IdentityVerifier | None, limit: RateLimit) -> None:
        self.model, self.oidc, self.limit = model, oidc, limit
        self.use = TokenUse(model)
        self._known: OrderedDict[bytes, tuple[int, dt.datetime, Caller]] = OrderedDict()
        self._lock = threading.Lock()

    def caller(self, request: Request) -> Caller:
        """Return the caller of a request, or raise a 401 or 429 problem."""
        header = request.headers.get("authorization")
        credential = None
        if header is not None:
            scheme, _, credential = header.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                self._deny("malformed Authorization header", "-")
        return self.of(request, credential)

    def of(self, request: Request, credential: str | None) -> Caller:
        """Return the caller a credential makes (None: anonymous), checked and counted
        as a bearer token is: the pages give the one their cookie holds."""
        if credential is None:
            host = request.client.host if request.client else "?"
            found = Caller(kind="anonymous", key=f"anonymous:{host}",
                           scope=public_scope(self.model))  # fmt: skip
            if not found.scope.channels:
                raise Problem(401, "Unauthorized", "a credential is needed: send "
                              "'Authorization: Bearer TOKEN'", _CHALLENGE)  # fmt: skip
        else:
            found = self._remembered(credential.strip())
        wait = self.limit.take(found.key)
        if wait > 0:
            log.warning("rate limited %s", found.key)
            raise Problem(429, "Too many requests", f"over the rate of {self.limit.rate:g} "
                          "requests a second; try again later",
                          {"Retry-After": str(max(1, math.ceil(wait)))})  # fmt: skip
        return found

    def _remembered(self, credential: str) -> Caller:
        """Return the caller of a credential checked before, if the read model has not
        moved since (no grant, revocation or token could have changed) and it has not
        expired; else check it again. Refusals are never remembered."""
        key = hashlib.sha256(credential.encode()).digest()
        position, now = self.model.position(), dt.datetime.now(dt.UTC)
        with self._lock:
            hit = self._known.get(key)
            if hit is not None and hit[0] == position and now < hit[1]:
                self._known.move_to_end(key)
                if hit[2].token_id is not None:
                    self.use.used(hit[2].token_id, now)
                return hit[2]
        found, until = self._of_bearer(credential)
        with self._lock:
            self._known[key] = (position, min(until, now + _REMEMBER), found)
            while len(self._known) > _REMEMBERED:
                self._known.popitem(last=False)
        return found

    def _of_bearer(self, credential: str) -> tuple[Caller, dt.datetime]:
        """Return the caller of a credential and until when it may be remembered."""
        token_id = token_id_of(credential)
        if token_id is not None:
            return self._of_token(token_id, credential)
        if credential.count(".") != 2:
            self._deny("not a skyledger token nor a JSON Web Token", "-")
        if self.oidc is None:
            self._deny("this server accepts no OpenID Connect tokens (no issuer set)", "jwt")
        try:
            principal = self.oidc.verify(credential)
        except Exception as exc:  # the verifier's reason (never the token)
            self._deny(str(exc) or type(exc).__name__, "jwt")
        identities = frozenset(principal.identities)
        return Caller(kind="oidc", key=f"oidc:{principal.subject}", identities=identities,
                      scope=scope_of(self.model, identities)), principal.expires_at  # fmt: skip

    def _of_token(self, token_id: str, credential: str) -> tuple[Caller, dt.datetime]:
        found = tokens(self.model, token_id=token_id)
        if not found or not matches(found[0], credential):
            self._deny("unknown token", token_id)
        row = found[0]
        why = row.usable(dt.datetime.now(dt.UTC))
        if why is not None:
            self._deny(f"token {why}", token_id)
        self.use.used(token_id, dt.datetime.now(dt.UTC))
        identities = frozenset(row.identities or (row.owner,))
        scope = scope_of(self.model, identities, row.channels)
        return Caller(kind="token", key=f"token:{token_id}", identities=identities, scope=scope,
                      token_id=token_id), row.expires  # fmt: skip

    @staticmethod
    def _deny(reason: str, which: str) -> NoReturn:
        log.warning("denied (%s): %s", which, reason)
        raise Problem(401, "Unauthorized", f"credential refused: {reason}", _CHALLENGE)
