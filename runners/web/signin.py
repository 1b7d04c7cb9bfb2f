"""Signing in to the pages: a personal access token pasted in a form, or the OpenID
Connect authorization code flow with PKCE (RFC 7636) at the API's issuer.

Either way the browser ends up holding the credential in an HttpOnly, SameSite=Lax
cookie, and every page checks it exactly as the API checks a bearer token (so a revoked
token or an expired id token stops working on the next page). The code flow keeps its
state, verifier, nonce and the page to return to in a short-lived cookie of its own,
checked at the callback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from skyledger.ledger.errors import RunnerError

__all__ = [
    "FLOW_COOKIE",
    "SESSION_COOKIE",
    "Flow",
    "OidcClient",
    "SignInFailed",
    "safe_next",
]

SESSION_COOKIE = "skyledger_session"
FLOW_COOKIE = "skyledger_signin"
FLOW_MAX_AGE_S = 600
_SCOPES = ("openid", "profile", "email", "groups")


class SignInFailed(RunnerError):
    """The identity provider's answer did not give a usable id token (the reason says why)."""


def safe_next(value: str | None) -> str:
    """Return a page to go to after signing in: a path of this site, else ``/``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


@dataclass(frozen=True)
class Flow:
    """One sign-in under way: what the callback must find again."""

    state: str
    verifier: str
    nonce: str
    next: str

    @classmethod
    def new(cls, next_page: str | None) -> Flow:
        """Return a flow with fresh random state, PKCE verifier and nonce."""
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(48),
                   secrets.token_urlsafe(24), safe_next(next_page))  # fmt: skip

    @property
    def challenge(self) -> str:
        """Return the PKCE S256 challenge of the verifier."""
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def cookie(self) -> str:
        """Return the flow as a cookie value."""
        return base64.urlsafe_b64encode(json.dumps(asdict(self)).encode()).decode()

    @classmethod
    def of_cookie(cls, value: str | None) -> Flow | None:
        """Return the flow a cookie holds (None if absent or not one)."""
        if not value:
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(value.encode()))
            return cls(**{k: str(data[k]) for k in ("state", "verifier", "nonce", "next")})
        except (ValueError, KeyError, TypeError):
            return None


class OidcClient:
    """This site as a client of the issuer: where to send the browser, how to trade the
    code for tokens. ``secret`` None: a public client (PKCE alone)."""

    def __init__(self, issuer: str, client_id: str, secret: str | None = None,
                 timeout_s: float = 10.0) -> None:  # fmt: skip
        self.issuer, self.client_id, self.secret = issuer.rstrip("/"), client_id, secret
        self.timeout_s = timeout_s
        self._discovery: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def discovery(self) -> dict[str, Any]:
        """Return the issuer's discovery document (read once)."""
        with self._lock:
            if self._discovery is None:
                url = f"{self.issuer}/.well-known/openid-configuration"
                try:
                    with urllib.request.urlopen(url, timeout=self.timeout_s) as answer:
                        self._discovery = json.load(answer)
                except (OSError, ValueError) as exc:
                    raise SignInFailed(f"the issuer's discovery document {url}: {exc}") from None
            assert self._discovery is not None
            return self._discovery

    def authorize_url(self, flow: Flow, redirect_uri: str) -> str:
        """Return the issuer's page the browser goes to, to sign in."""
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
            "scope": " ".join(_SCOPES), "state": flow.state, "nonce": flow.nonce,
            "code_challenge": flow.challenge, "code_challenge_method": "S256",
        })  # fmt: skip
        return f"{self.discovery()['authorization_endpoint']}?{query}"

    def exchange(self, code: str, flow: Flow, redirect_uri: str) -> str:
        """Trade an authorization code for the id token (raise SignInFailed)."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": flow.verifier, "client_id": self.client_id}  # fmt: skip
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.secret is not None:
            basic = f"{urllib.parse.quote(self.client_id, safe='')}:" + urllib.parse.quote(
                self.secret, safe=""
            )
            headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
        request = urllib.request.Request(
            str(self.discovery()["token_endpoint"]),
            data=urllib.parse.urlencode(form).encode(), headers=headers,
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                tokens = json.load(answer)
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:300]
            raise SignInFailed(f"the issuer refused the code ({error.code}): {detail}") from None
        except (OSError, ValueError) as exc:
            raise SignInFailed(f"the issuer's token endpoint: {exc}") from None
        token = tokens.get("id_token") if isinstance(tokens, dict) else None
        if not isinstance(token, str):
            raise SignInFailed("the issuer's answer holds no id token")
        return token
