"""A throwaway OpenID Connect provider: Dex, built by ``bash runners/dex/build.sh`` into
``runners/dex/bin/dex``, on a free loopback port, in a temporary folder, with its state in
memory. Users log in with static passwords and get tokens through the password grant
(no browser), for tests of bearer-token checks against a real issuer.

    users = [DexUser("alice@example.org", "alice", "secret", groups=("sky:t3",))]
    clients = [DexClient("skyledger-api", "api-secret")]
    with EmbeddedDex(users, clients) as dex:
        dex.issuer      # http://127.0.0.1:PORT/dex
        dex.password_token("alice", "secret", "skyledger-api", "api-secret").id_token
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from skyledger.runners.embedded import ServerProcess, free_port, log_tail

__all__ = ["DEX_BINARY", "DexClient", "DexTokens", "DexUser", "EmbeddedDex", "dex_problem"]

DEX_BINARY = Path(__file__).resolve().parent / "dex" / "bin" / "dex"
"""Where ``bash runners/dex/build.sh`` puts Dex (``SKYLEDGER_DEX`` overrides)."""
_DEX_BUILD = "bash runners/dex/build.sh"
DEFAULT_SCOPES = ("openid", "profile", "email", "groups")


def _dex_binary() -> Path:
    return Path(os.environ.get("SKYLEDGER_DEX") or DEX_BINARY)


def dex_problem() -> str | None:
    """Return why Dex cannot start here (its binary is not built), or None if it can."""
    binary = _dex_binary()
    if not os.access(binary, os.X_OK):
        return f"no Dex binary at {binary}: build it with `{_DEX_BUILD}` (needs Go)"
    return None


@dataclass(frozen=True)
class DexUser:
    """A static-password user. Dex looks users up by email: :meth:`EmbeddedDex.password_token`
    also takes the username. ``username`` goes to the ``preferred_username`` claim (scope
    ``profile``), ``groups`` to the ``groups`` claim (scope ``groups``)."""

    email: str
    username: str
    password: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class DexClient:
    """A static OAuth2 client: its id is the ``aud`` of the id tokens it gets. A public
    client (``public``: no secret, PKCE) with no ``redirect_uris`` may be sent back to
    any ``http://127.0.0.1:PORT/...`` (RFC 8252's loopback redirect)."""

    id: str
    secret: str
    redirect_uris: tuple[str, ...] = ("http://127.0.0.1/callback",)
    public: bool = False


@dataclass(frozen=True)
class DexTokens:
    """What the token endpoint answered to a password grant."""

    id_token: str
    access_token: str
    expires_in: int


class EmbeddedDex(ServerProcess):
    """Dex on ``127.0.0.1:PORT``, issuer ``http://127.0.0.1:PORT/dex``, in-memory storage,
    the password database on (``users``), ``clients`` as static clients, id tokens valid
    for ``id_token_expiry_s``; its log is ``dex.log`` in its folder."""

    def __init__(
        self,
        users: Sequence[DexUser],
        clients: Sequence[DexClient],
        *,
        id_token_expiry_s: int = 3600,
        port: int | None = None,
        start_within_s: float = 60.0,
    ) -> None:
        problem = dex_problem()
        if problem is not None:
            raise RuntimeError(problem)
        import bcrypt  # a dev dependency: only tests and benchmarks start Dex

        self.users, self.clients = tuple(users), tuple(clients)
        self.port = port or free_port()
        self.issuer = f"http://127.0.0.1:{self.port}/dex"
        self.root = Path(tempfile.mkdtemp(prefix="skyledger-dex-"))
        self.log = self.root / "dex.log"
        config = {
            "issuer": self.issuer,
            "storage": {"type": "memory"},
            "web": {"http": f"127.0.0.1:{self.port}"},
            "logger": {"level": "info", "format": "text"},
            "expiry": {"idTokens": f"{id_token_expiry_s}s"},
            "oauth2": {"passwordConnector": "local", "skipApprovalScreen": True},
            "enablePasswordDB": True,
            "staticPasswords": [
                {
                    "email": user.email,
                    "username": user.username,
                    "preferredUsername": user.username,
                    "userID": f"user-{number}",
                    # cost 10: the least Dex accepts, and quick to hash
                    "hash": bcrypt.hashpw(user.password.encode(), bcrypt.gensalt(10)).decode(),
                    "groups": list(user.groups),
                }
                for number, user in enumerate(self.users)
            ],
            "staticClients": [
                {"id": client.id, "name": client.id, "redirectURIs": list(client.redirect_uris)}
                | ({"public": True} if client.public else {"secret": client.secret})
                for client in self.clients
            ],
        }
        self.config = self.root / "config.yaml"
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(_dex_binary()), "serve", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            self.discovery = self._wait_ready(start_within_s)
        except BaseException:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            raise  # the folder stays: the message names its log

    def _wait_ready(self, within_s: float) -> dict[str, object]:
        """Poll the discovery document until Dex answers it, and return it."""
        assert self.proc is not None
        url = f"{self.issuer}/.well-known/openid-configuration"
        deadline = time.monotonic() + within_s
        while True:
            if self.proc.poll() is not None:
                msg = f"Dex exited with code {self.proc.returncode}; log {self.log}:\n"
                raise RuntimeError(msg + log_tail(self.log))
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    document: dict[str, object] = json.load(response)
                    return document
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    msg = f"Dex did not answer {url} within {within_s:g} s; log {self.log}:\n"
                    raise RuntimeError(msg + log_tail(self.log)) from None
                time.sleep(0.05)

    def password_token(
        self,
        username_or_email: str,
        password: str,
        client_id: str,
        client_secret: str,
        scopes: Sequence[str] = DEFAULT_SCOPES,
    ) -> DexTokens:
        """Log a user in with the password grant and return the tokens Dex issued (an
        error from the token endpoint raises RuntimeError with Dex's answer)."""
        email = next(
            (u.email for u in self.users if username_or_email in (u.username, u.email)),
            username_or_email,
        )
        body = urllib.parse.urlencode(
            {"grant_type": "password", "username": email, "password": password,
             "scope": " ".join(scopes)}
        ).encode()  # fmt: skip
        basic = ":".join(urllib.parse.quote(part, safe="") for part in (client_id, client_secret))
        request = urllib.request.Request(
            str(self.discovery["token_endpoint"]),
            data=body,
            headers={"Authorization": "Basic " + base64.b64encode(basic.encode()).decode()},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise RuntimeError(f"Dex refused the password grant ({error.code}): {detail}") from None
        return DexTokens(
            id_token=answer["id_token"],
            access_token=answer["access_token"],
            expires_in=int(answer.get("expires_in", 0)),  # left out when under a second
        )

    def __enter__(self) -> EmbeddedDex:
        return self
