"""For API tests: serving an application (uvicorn in a thread on a free loopback port),
personal access tokens issued straight into a ledger, and calling every route of the
API's schema with ids a caller may not see."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from skyledger.ledger import Ledger
from skyledger.ledger.access import TokenIssued
from skyledger.projections.access import make_token, token_digest


def issue_token(
    ledger: Ledger, owner: str, days: float = 30, channels: tuple[str, ...] | None = None
) -> str:
    """Append a personal access token for ``owner`` (expired if ``days`` < 0); return it."""
    token, token_id = make_token()
    ledger.append([TokenIssued(
        stream=f"token:{token_id}", token_id=token_id, digest=token_digest(token), owner=owner,
        channels=channels, expires=dt.datetime.now(dt.UTC) + dt.timedelta(days=days), by="test",
    )])  # fmt: skip
    return token


@contextmanager
def serving(app: FastAPI, within_s: float = 60.0) -> Iterator[httpx.Client]:
    """Serve an app with uvicorn and yield a client for it; stop it after."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + within_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def fill(path: str, secret: dict[str, set[str]]) -> list[str]:
    """Return concrete paths for a templated one, with secret ids in its parameters."""
    if "{stock}" in path:
        return [path.replace("{stock}", s) for s in sorted(secret["stocks"])[:3]]
    if "{ident}" in path:
        ids = sorted(secret["results"])[:2] + sorted(secret["states"])[:2]
        ids += sorted(secret["reactions"])[:1]
        return [path.replace("{ident}", i) for i in ids]
    if "{token_id}" in path:
        return [path.replace("{token_id}", "0123456789abcdef")]
    return [path]


def every_route_keeps(
    client: httpx.Client,
    token: str,
    secret: dict[str, set[str]],
    params: list[dict[str, Any]],
    unseen: str | None = None,
) -> None:
    """Call every route of the API's schema as the token's caller, with secret ids in
    the paths (and a lookup of the secret stocks), and each GET with each of ``params``:
    no answer may hold a secret id it was not asked about (nor ``unseen``), nor fail."""
    schema = client.get("/api/v1/openapi.json").json()
    tried: set[str] = set()
    for path, methods in schema["paths"].items():
        for method in methods:
            for concrete in fill(path, secret):
                for query in params if method == "get" else [{}]:
                    body = {"stocks": sorted(secret["stocks"])} if "lookup" in path else {}
                    answer = client.request(
                        method.upper(), concrete, params=query,
                        headers={"Authorization": f"Bearer {token}"},
                        json=body if method == "post" else None,
                    )  # fmt: skip
                    assert answer.status_code < 500, (concrete, query, answer.text)
                    text = answer.text
                    asked = concrete + json.dumps(query) + json.dumps(body)
                    leaked = [i for kind in secret.values() for i in kind
                              if i in text and i not in asked]  # fmt: skip
                    assert not leaked, (method, concrete, query, leaked[:3])  # echoes are no leak
                    if unseen is not None and not concrete.endswith("openapi.json"):
                        assert unseen not in text, concrete
            tried.add(f"{method} {path}")
    assert tried == {f"{m} {p}" for p, ms in schema["paths"].items() for m in ms}
