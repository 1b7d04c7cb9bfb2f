"""OpenID Connect bearer tokens: checked against the issuer's published keys and turned
into a :class:`Principal` whose identities channels can be granted to, with AMPEL's
meaning (``user:NAME``, ``org:ORG``, ``team:ORG/TEAM``).

    verifier = OidcVerifier(OidcSettings(issuer="https://dex.example.org/dex",
                                         audience="skyledger-api"))
    principal = verifier.verify(bearer_token)   # or TokenRejected("expired"), ...
    "team:ampelproject/dev" in principal.identities

Only RS256 and ES256 signatures are accepted; the algorithm is read from the token's
header and refused before any key is looked at. Keys come from the issuer's JWKS (its
address from ``ISSUER/.well-known/openid-configuration`` unless ``jwks_uri`` is set),
fetched at the first token and again, at most once per ``jwks_min_refresh_s``, when a
token names a key id the cached set does not have (the issuer rotated its keys).

A token that is not good raises :class:`TokenRejected` with a short reason (never the
token); an issuer whose discovery document or keys cannot be read raises
:class:`IssuerUnavailable` (a server-side problem, not the client's).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, Field

from skyledger.ledger.errors import RunnerError, SkyledgerError

__all__ = [
    "ALGORITHMS",
    "IssuerUnavailable",
    "OidcSettings",
    "OidcVerifier",
    "Principal",
    "TokenRejected",
    "identities_of",
]

ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}
"""The signature algorithms accepted, each with the key type (``kty``) it needs."""
_REASONS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.InvalidSignatureError, "signature does not verify"),  # before DecodeError, its base
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.ImmatureSignatureError, "not yet valid"),  # nbf, or iat, in the future
    (jwt.InvalidIssuedAtError, "malformed claim 'iat'"),
    (jwt.DecodeError, "malformed token"),
)
_MAX_DOCUMENT = 1 << 20  # a discovery document or JWKS larger than 1 MiB is refused


class TokenRejected(SkyledgerError):
    """A bearer token is not accepted. ``reason`` says why in a few words and never
    contains the token: "expired", "wrong issuer 'X'", "wrong audience", "algorithm
    'HS256' not allowed", "signature does not verify", "unknown key id", "malformed
    token", "not yet valid", "missing claim 'exp'"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IssuerUnavailable(RunnerError):
    """The issuer's discovery document or its keys could not be read or made no sense."""


class OidcSettings(BaseModel):
    """How bearer tokens are checked and mapped to identities.

    ``audience``: the token's ``aud`` must contain it (with several, at least one of
    them). ``user_claim``: the claim naming the user, ``user:VALUE``; there is no
    fallback to another claim (a token without it has no ``user:`` identity, only its
    groups'), so a deployment whose provider names users in ``email`` says so here.
    ``groups_claim``: a list of groups; an entry ``ORG<separator>TEAM`` gives ``org:ORG``
    and ``team:ORG/TEAM``, any other entry ``org:ENTRY``. ``leeway_s``: clock skew
    allowed on ``exp``, ``nbf`` and ``iat``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str = Field(min_length=1)
    audience: str | tuple[str, ...]
    user_claim: str = "preferred_username"
    groups_claim: str = "groups"
    org_team_separator: str = Field(default=":", min_length=1)
    leeway_s: float = Field(default=30.0, ge=0)
    jwks_uri: str | None = None
    jwks_min_refresh_s: float = Field(default=60.0, ge=0)
    http_timeout_s: float = Field(default=5.0, gt=0)


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for, until when, and the identities that gives."""

    subject: str
    issuer: str
    expires_at: datetime
    identities: frozenset[str]
    nonce: str | None = None  # the id token's nonce claim (a sign-in flow checks it)


def identities_of(claims: Mapping[str, Any], settings: OidcSettings) -> frozenset[str]:
    """Return the identities a token's (verified) claims give: ``user:NAME`` from the user
    claim, ``org:ORG`` and ``team:ORG/TEAM`` from the groups claim. Values of the wrong
    type and entries with an empty organisation are ignored."""
    found: set[str] = set()
    user = claims.get(settings.user_claim)
    if isinstance(user, str) and user:
        found.add(f"user:{user}")
    groups = claims.get(settings.groups_claim)
    if isinstance(groups, str):  # some providers send one group as a string
        groups = [groups]
    if not isinstance(groups, list):
        return frozenset(found)
    for entry in groups:
        if not isinstance(entry, str):
            continue
        org, separator, team = entry.partition(settings.org_team_separator)
        if not org:
            continue
        found.add(f"org:{org}")
        if separator and team:
            found.add(f"team:{org}/{team}")
    return frozenset(found)


def _quoted(value: object, limit: int = 80) -> str:
    """``'value'`` for a reason, cut short: a claim value chosen by whoever sent the token."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return repr(text if len(text) <= limit else text[:limit] + "...")


class OidcVerifier:
    """Checks bearer tokens against one issuer (thread-safe; keeps the issuer's keys)."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._jwks_uri = settings.jwks_uri
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None

    def verify(self, token: str) -> Principal:
        """Return the principal of a good token; raise :class:`TokenRejected` otherwise."""
        settings = self.settings
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.InvalidTokenError, TypeError, ValueError):
            raise TokenRejected("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise TokenRejected(f"algorithm {_quoted(alg, 20)} not allowed")
        # Before any key is looked up: a token of another issuer makes no JWKS refresh.
        if "iss" not in unverified:
            raise TokenRejected("missing claim 'iss'")
        if unverified["iss"] != settings.issuer:
            raise TokenRejected(f"wrong issuer {_quoted(unverified.get('iss'))}")
        kid = header.get("kid")
        jwk = self._key(kid) if isinstance(kid, str) else None
        if jwk is None:
            raise TokenRejected("unknown key id")
        if (
            jwk.get("kty") != ALGORITHMS[alg]
            or jwk.get("alg", alg) != alg
            or (alg == "ES256" and jwk.get("crv") != "P-256")
        ):
            raise TokenRejected(f"key {_quoted(kid, 40)} is not for algorithm {alg}")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            raise TokenRejected(f"key {_quoted(kid, 40)} is not usable") from None
        claims = self._decode(token, key, alg)
        try:
            expires_at = datetime.fromtimestamp(claims["exp"], UTC)
        except (OverflowError, OSError, ValueError):
            raise TokenRejected("malformed claim 'exp'") from None
        return Principal(
            subject=claims["sub"],
            issuer=claims["iss"],
            expires_at=expires_at,
            identities=identities_of(claims, settings),
            nonce=claims.get("nonce") if isinstance(claims.get("nonce"), str) else None,
        )

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        settings = self.settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],  # only the one checked above: never an HMAC
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.MissingRequiredClaimError as error:
            raise TokenRejected(f"missing claim {_quoted(error.claim, 20)}") from None
        except jwt.InvalidTokenError as error:
            reason = next((r for kind, r in _REASONS if isinstance(error, kind)), "invalid claims")
            raise TokenRejected(reason) from None
        if not isinstance(claims.get("sub"), str) or not isinstance(claims["exp"], int | float):
            raise TokenRejected("malformed claims")
        return claims

    def _key(self, kid: str) -> dict[str, Any] | None:
        """The JWK of a key id: from the cached set, or from a fresh one when the cached
        set lacks it and was fetched at least ``jwks_min_refresh_s`` ago."""
        with self._lock:
            now = time.monotonic()
            if self._fetched_at is None or (
                kid not in self._keys and now - self._fetched_at >= self.settings.jwks_min_refresh_s
            ):
                self._refresh()
            return self._keys.get(kid)

    def _refresh(self) -> None:
        if self._jwks_uri is None:
            url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            discovery = self._get_json(url)
            if discovery.get("issuer") != self.settings.issuer:
                msg = f"{url} names issuer {_quoted(discovery.get('issuer'))}, not the one set"
                raise IssuerUnavailable(msg)
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise IssuerUnavailable(f"{url} has no jwks_uri")
            self._jwks_uri = jwks_uri
        jwks = self._get_json(self._jwks_uri)
        keys = jwks.get("keys")
        if not isinstance(keys, list):
            raise IssuerUnavailable(f"{self._jwks_uri} is not a JWK set")
        self._keys = {
            key["kid"]: key
            for key in keys
            if isinstance(key, dict) and isinstance(key.get("kid"), str)
            and key.get("use", "sig") == "sig"
        }  # fmt: skip
        self._fetched_at = time.monotonic()

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(url, timeout=self.settings.http_timeout_s) as response:
                body = response.read(_MAX_DOCUMENT + 1)
            if len(body) > _MAX_DOCUMENT:
                raise IssuerUnavailable(f"{url} is larger than {_MAX_DOCUMENT} bytes")
            document = json.loads(body)
        except (OSError, ValueError) as error:
            raise IssuerUnavailable(f"cannot read {url}: {error}") from None
        if not isinstance(document, dict):
            raise IssuerUnavailable(f"{url} is not a JSON object")
        return document
