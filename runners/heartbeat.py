"""A live process's heartbeats: a ``RunHeartbeat`` in the ledger at start, then every
``every_s`` seconds while the process runs, so that ``skyledger runs`` can tell a run
whose process is gone (killed, its host lost: no ``RunFinished`` will come) from one
still running, and say when it was last seen."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from skyledger.ledger import Ledger, RunHeartbeat

__all__ = ["beating"]

log = logging.getLogger("skyledger.heartbeat")


async def beating(
    ledger: Ledger,
    run_id: str,
    every_s: float,
    stop: asyncio.Event,
    transient: tuple[type[BaseException], ...],
) -> None:
    """Append heartbeats of run ``run_id`` until ``stop`` (or until cancelled), each on a
    thread of the loop's default pool, so that a long batch on the process's work thread
    does not hold them up. One that fails for a ``transient`` reason (the database away)
    is logged and skipped: the next may pass."""
    loop = asyncio.get_running_loop()
    beat = 0
    while not stop.is_set():
        beat += 1
        event = RunHeartbeat(
            stream=f"run:{run_id}", run=run_id, beat=beat, every_s=float(every_s), run_id=run_id
        )
        try:
            await loop.run_in_executor(None, ledger.append, [event])
        except transient as exc:
            log.warning("heartbeat %d of run %s not recorded: %s", beat, run_id, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
