"""Waiting out a server that is away: a call retried until it stops failing for a
transient reason, or until the process is asked to stop (live workers and the relay,
whose first ledger calls may meet PostgreSQL restarting)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["until_done"]

T = TypeVar("T")


async def until_done(
    call: Callable[[], Awaitable[T]],
    stop: asyncio.Event,
    transient: tuple[type[BaseException], ...],
    on_error: Callable[[BaseException], None],
    pause_s: float = 1.0,
) -> T:
    """Return ``await call()``; after an error of a ``transient`` type, report it to
    ``on_error``, wait ``pause_s`` and call again, unless ``stop`` is set (then the
    error is raised)."""
    while True:
        try:
            return await call()
        except transient as exc:
            if stop.is_set():
                raise
            on_error(exc)
            await asyncio.sleep(pause_s)
