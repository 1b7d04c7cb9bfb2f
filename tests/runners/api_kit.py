"""For API tests: serving an application (uvicorn in a thread on a free loopback port),
and personal access tokens issued straight into a ledger."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from ledger import Ledger
from ledger.access import TokenIssued
from projections.access import make_token, token_digest


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
