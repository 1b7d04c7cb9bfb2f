"""Bearer tokens against a real OpenID Connect provider (Dex, started by the suite): a
password-grant token is accepted and mapped to ``user:``, ``org:`` and ``team:``
identities; tokens that are expired, of another issuer, for another audience, re-signed,
unsigned, HMAC-signed with the issuer's public key or garbled are refused, each with its
reason and never quoting the token. The identity mapping is also checked on claim dicts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pydantic
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from skyledger.runners.embedded import free_port
from skyledger.runners.oidc import (
    IssuerUnavailable,
    OidcSettings,
    OidcVerifier,
    TokenRejected,
    identities_of,
)
from skyledger.runners.oidc_provider import DexClient, DexTokens, DexUser, EmbeddedDex, dex_problem

oidc = pytest.mark.oidc


def _login(dex: EmbeddedDex, user: int = 0, client: int = 0) -> DexTokens:
    login = dex.users[user]
    return dex.password_token(login.username, login.password, *_client(dex, client))


def _client(dex: EmbeddedDex, number: int) -> tuple[str, str]:
    return dex.clients[number].id, dex.clients[number].secret


def _verifier(dex: EmbeddedDex, **settings: Any) -> OidcVerifier:
    settings.setdefault("audience", dex.clients[0].id)
    return OidcVerifier(OidcSettings(issuer=dex.issuer, **settings))


def _rejected(verifier: OidcVerifier, token: str) -> str:
    """The reason a token is refused for; it quotes no part of the token."""
    with pytest.raises(TokenRejected) as caught:
        verifier.verify(token)
    reason = caught.value.reason
    assert str(caught.value) == reason
    for part in token.split("."):
        assert len(part) < 8 or part not in reason
    return reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A JWT put together by hand, signed by ``sign`` over its signing input."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


@pytest.fixture(scope="module")
def dex_b(dex: EmbeddedDex) -> Iterator[EmbeddedDex]:
    """A second Dex: another issuer, with the same users and clients, and id tokens that
    expire after one second."""
    with EmbeddedDex(dex.users, dex.clients, id_token_expiry_s=1) as server:
        yield server


@oidc
def test_password_grant_token_is_accepted_with_its_identities(dex: EmbeddedDex) -> None:
    tokens = _login(dex)
    principal = _verifier(dex).verify(tokens.id_token)
    _, claims = _parts(tokens.id_token)
    assert principal.subject == claims["sub"]
    assert principal.issuer == dex.issuer
    assert principal.expires_at.timestamp() == claims["exp"]
    assert principal.expires_at.utcoffset() is not None
    assert 3000 < principal.expires_at.timestamp() - time.time() <= 3600
    # Dex's static passwords carry groups into password-grant tokens (scope "groups")
    assert claims["groups"] == ["ampelproject:dev", "zwicky"]
    assert principal.identities == {
        "user:alice",
        "org:ampelproject",
        "team:ampelproject/dev",
        "org:zwicky",
    }
    bob = dex.users[1]
    by_email = dex.password_token(bob.email, bob.password, *_client(dex, 0))
    assert _verifier(dex).verify(by_email.id_token).identities == {"user:bob"}


@oidc
def test_token_for_another_audience_is_refused(dex: EmbeddedDex) -> None:
    token = _login(dex, client=1).id_token
    assert _rejected(_verifier(dex), token) == "wrong audience"
    either = _verifier(dex, audience=(dex.clients[0].id, dex.clients[1].id))
    assert either.verify(token).identities >= {"user:alice"}


@oidc
def test_token_of_another_issuer_is_refused(dex: EmbeddedDex, dex_b: EmbeddedDex) -> None:
    token = _login(dex_b).id_token
    assert _rejected(_verifier(dex), token) == f"wrong issuer '{dex_b.issuer}'"
    assert _verifier(dex_b, leeway_s=60).verify(token).issuer == dex_b.issuer


@oidc
def test_expired_token_is_refused(dex_b: EmbeddedDex) -> None:
    token = _login(dex_b).id_token
    expires = _parts(token)[1]["exp"]
    deadline = time.monotonic() + 30
    while time.time() < expires + 1:  # a wait on the clock, not a guess: exp is 1 s away
        assert time.monotonic() < deadline, "the clock did not pass the token's exp"
        time.sleep(0.05)
    assert _rejected(_verifier(dex_b, leeway_s=0), token) == "expired"
    assert _verifier(dex_b, leeway_s=60).verify(token).subject  # leeway is honoured


@oidc
def test_token_resigned_with_another_key_is_refused(dex: EmbeddedDex) -> None:
    header, claims = _parts(_login(dex).id_token)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": header["kid"]})
    assert _rejected(_verifier(dex), forged) == "signature does not verify"


@oidc
def test_unsigned_and_hmac_tokens_are_refused_before_any_key(dex: EmbeddedDex) -> None:
    header, claims = _parts(_login(dex).id_token)
    verifier = _verifier(dex)
    unsigned = _forge({**header, "alg": "none"}, claims, lambda _: b"")
    assert _rejected(verifier, unsigned) == "algorithm 'none' not allowed"
    # HS256 with the issuer's public key as the secret: the old key-confusion attack
    with urllib.request.urlopen(str(dex.discovery["jwks_uri"]), timeout=10) as response:
        jwk = next(k for k in json.load(response)["keys"] if k["kid"] == header["kid"])
    pem = jwt.PyJWK(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs256 = _forge(
        {**header, "alg": "HS256"},
        claims,
        lambda data: hmac.new(pem, data, hashlib.sha256).digest(),
    )
    assert _rejected(verifier, hs256) == "algorithm 'HS256' not allowed"
    rs512 = _forge({**header, "alg": "RS512"}, claims, lambda _: b"x")
    assert _rejected(verifier, rs512) == "algorithm 'RS512' not allowed"


@oidc
def test_garbled_tokens_are_refused(dex: EmbeddedDex) -> None:
    token = _login(dex).id_token
    verifier = _verifier(dex)
    for garbled in (token[: len(token) // 2], "not-a-token", "", "a.b.c", token + "."):
        assert _rejected(verifier, garbled) == "malformed token", garbled
    head, payload, signature = token.split(".")
    flipped = signature[:100] + ("B" if signature[100] == "A" else "A") + signature[101:]
    assert _rejected(verifier, f"{head}.{payload}.{flipped}") == "signature does not verify"
    # 337 characters: not base64 whatever they are (342 for a 2048-bit RSA signature)
    assert _rejected(verifier, f"{head}.{payload}.{signature[:337]}") == "malformed token"
    assert _rejected(verifier, f"{head}.{payload[:-4]}.{signature}") == "malformed token"


class _CountingVerifier(OidcVerifier):
    """A verifier that notes each document it fetches from the issuer."""

    fetched: list[str]

    def _get_json(self, url: str) -> dict[str, Any]:
        self.fetched = [*getattr(self, "fetched", []), url]
        return super()._get_json(url)


@oidc
def test_unknown_key_id_refreshes_the_keys_at_most_once_a_minute(dex: EmbeddedDex) -> None:
    claims = _parts(_login(dex).id_token)[1]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": "rotated-away"})
    # discovery and JWKS at the first token; the JWKS again for the second unless fetched
    # less than jwks_min_refresh_s ago; none for a token of a known key
    for min_refresh_s, fetches in ((60.0, 2), (0.0, 3)):
        verifier = _CountingVerifier(_verifier(dex, jwks_min_refresh_s=min_refresh_s).settings)
        assert _rejected(verifier, forged) == "unknown key id"
        assert _rejected(verifier, forged) == "unknown key id"
        assert verifier.verify(_login(dex).id_token).subject == claims["sub"]
        assert len(verifier.fetched) == fetches, verifier.fetched


@oidc
def test_dex_that_cannot_start_says_why_with_its_log(dex: EmbeddedDex) -> None:
    with pytest.raises(RuntimeError, match=r"Dex exited with code") as caught:
        EmbeddedDex([DexUser("a@example.org", "a", "pw")], [DexClient("", "secret")])
    named = re.search(r"log (\S+dex\.log):", str(caught.value))
    assert named is not None
    log = Path(named[1])
    assert "invalid config" in str(caught.value)  # the log's tail
    assert "invalid config" in log.read_text()
    shutil.rmtree(log.parent)


def test_missing_dex_binary_names_the_build_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKYLEDGER_DEX", str(tmp_path / "dex"))
    problem = dex_problem()
    assert problem is not None
    assert "bash runners/dex/build.sh" in problem
    with pytest.raises(RuntimeError, match=r"runners/dex/build\.sh"):
        EmbeddedDex([], [])


def test_unreachable_issuer_is_not_the_tokens_fault() -> None:
    issuer = f"http://127.0.0.1:{free_port()}/dex"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"iss": issuer, "sub": "x", "aud": "api", "exp": int(time.time()) + 60}
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k"})
    verifier = OidcVerifier(OidcSettings(issuer=issuer, audience="api", http_timeout_s=2))
    with pytest.raises(IssuerUnavailable, match="cannot read"):
        verifier.verify(token)


def test_es256_tokens_and_keys_of_the_wrong_type(tmp_path: Path) -> None:
    """ES256 is accepted with a P-256 key; a key id whose key is of another type is not.
    (Dex signs with RS256 only, so a JWK set of its own, read from a file URL.)"""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = [
        {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "ec"},
        {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "rsa"},
    ]
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": keys}))
    issuer = "https://issuer.example.org"
    settings = OidcSettings(issuer=issuer, audience="api", jwks_uri=jwks.as_uri())
    verifier = OidcVerifier(settings)
    claims = {
        "iss": issuer, "sub": "s", "aud": ["api", "x"], "exp": int(time.time()) + 60,
        "email": "carol@example.org", "groups": ["org-only"],
    }  # fmt: skip

    def es256(kid: str = "ec", drop: str = "", **changes: Any) -> str:
        signed = {k: v for k, v in {**claims, **changes}.items() if k != drop}
        return jwt.encode(signed, ec_key, algorithm="ES256", headers={"kid": kid})

    good = es256()
    assert verifier.verify(good).identities == {"org:org-only"}  # no preferred_username
    assert _rejected(verifier, es256("rsa")) == "key 'rsa' is not for algorithm ES256"
    assert _rejected(verifier, es256(drop="exp")) == "missing claim 'exp'"
    assert _rejected(verifier, es256(drop="iss")) == "missing claim 'iss'"
    assert _rejected(verifier, es256(exp=10**20)) == "malformed claim 'exp'"
    assert _rejected(verifier, es256(nbf=int(time.time()) + 600)) == "not yet valid"
    assert _rejected(verifier, es256(iat=int(time.time()) + 600)) == "not yet valid"
    by_email = OidcVerifier(settings.model_copy(update={"user_claim": "email"}))
    assert "user:carol@example.org" in by_email.verify(good).identities


@pytest.mark.parametrize(
    ("claims", "identities"),
    [
        ({"preferred_username": "alice"}, {"user:alice"}),
        (
            {"preferred_username": "alice", "groups": ["ampelproject:dev", "ampelproject:ops"]},
            {"user:alice", "org:ampelproject", "team:ampelproject/dev", "team:ampelproject/ops"},
        ),
        ({"groups": ["zwicky"]}, {"org:zwicky"}),
        ({"groups": "zwicky:t3"}, {"org:zwicky", "team:zwicky/t3"}),  # one group, a string
        ({"groups": ["org:"]}, {"org:org"}),
        ({"groups": [":team", "", 7, None]}, set()),  # no organisation, or not a string
        ({"groups": {"a": "b"}, "preferred_username": 3}, set()),
        ({"groups": ["a:b:c"]}, {"org:a", "team:a/b:c"}),  # split at the first separator
        ({"email": "bob@example.org"}, set()),  # no fallback to another user claim
    ],
)
def test_identities_of_claims(claims: dict[str, Any], identities: set[str]) -> None:
    settings = OidcSettings(issuer="https://issuer.example.org", audience="api")
    assert identities_of(claims, settings) == identities


def test_identities_of_claims_named_otherwise() -> None:
    settings = OidcSettings(
        issuer="https://issuer.example.org",
        audience="api",
        user_claim="email",
        groups_claim="roles",
        org_team_separator="/",
    )
    claims = {"email": "bob@example.org", "roles": ["sky/t3", "ops"], "groups": ["x:y"]}
    assert identities_of(claims, settings) == {
        "user:bob@example.org",
        "org:sky",
        "team:sky/t3",
        "org:ops",
    }


def test_settings_are_frozen_and_strict() -> None:
    settings = OidcSettings(issuer="https://issuer.example.org", audience=["a", "b"])
    assert settings.audience == ("a", "b")
    assert (settings.user_claim, settings.groups_claim, settings.leeway_s) == (
        "preferred_username",
        "groups",
        30.0,
    )
    with pytest.raises(pydantic.ValidationError):
        settings.issuer = "https://other.example.org"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="extra"):
        OidcSettings(issuer="https://issuer.example.org", audience="a", algorithms=["HS256"])  # type: ignore[call-arg]
