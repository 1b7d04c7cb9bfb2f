"""Live mode: the relay and tier workers as processes, alert packets onto the bus, and
how far behind the ledger's head each tier is.

``skyledger live JOB`` starts (on embedded PostgreSQL and NATS when no URLs are given)
a relay and one worker per tier, each a process of its own as on a cluster, and shows
each tier's lag; ``skyledger relay`` and ``skyledger worker TIER JOB`` start one of
them (to add workers on more machines). See docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import nats.errors
from nats.js.errors import NotFoundError

from ledger import Ledger, Shard, digest_bytes
from projections.projector import tracking_of
from runners.bus import Bus, connect
from runners.job import Job
from runners.tiers import TIERS, JobUnits, build_tiers

__all__ = [
    "LiveProcesses",
    "TierLag",
    "alerts_pending",
    "lags",
    "packets_of",
    "publish_packets",
    "run_until_signal",
    "settle",
]

T = TypeVar("T")


def run_until_signal(work: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run ``work(stop)`` in an event loop; SIGTERM or SIGINT sets ``stop``, so the work
    finishes its batch, acknowledges and returns."""

    async def main() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await work(stop)

    return asyncio.run(main())


async def publish_packets(
    bus: Bus,
    packets: Iterable[bytes],
    *,
    rate: float | None = None,
    subject: str | None = None,
    window: int = 2000,
    on_sent: Callable[[int, float], None] | None = None,
) -> int:
    """Publish packets to the alerts stream, one per message, at ``rate`` per second (as
    fast as JetStream takes them if None); return how many. Each message's id is the
    packet's digest, so a publisher restarted half-way does not publish twice (within
    JetStream's duplicate window). ``on_sent(n, time)`` is called as each is sent."""
    client = await connect(bus.url, "skyledger publisher")
    try:
        js = client.jetstream()
        await bus.ensure_alerts_stream(js)
        target = subject or bus.alerts_subject
        start = time.monotonic()
        sent = 0
        chunk: list[bytes] = []
        window = 1 if rate else window  # paced: each packet on its own

        async def flush() -> None:
            # A window not acknowledged whole (NATS restarting, a full buffer) is
            # published again: JetStream drops the ones it had, by their ids.
            while True:
                try:
                    pending = [
                        await js.publish_async(
                            target, data, headers={"Nats-Msg-Id": digest_bytes(data)}
                        )
                        for data in chunk
                    ]
                    await asyncio.wait_for(asyncio.gather(*pending), 30)
                    return
                except (TimeoutError, nats.errors.Error):
                    await asyncio.sleep(0.5)

        for data in packets:
            if rate:
                delay = start + sent / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            chunk.append(data)
            sent += 1
            if len(chunk) >= window:
                await flush()
                chunk = []
            if on_sent is not None:
                on_sent(sent, time.time())
        if chunk:
            await flush()
        return sent
    finally:
        try:
            await asyncio.wait_for(client.drain(), 10)
        except (TimeoutError, nats.errors.Error):
            await client.close()


async def alerts_pending(bus: Bus, job: Job) -> int:
    """Return the alert messages not yet acknowledged by the job's T0 workers (all of
    the stream's messages if no T0 worker ever started)."""
    client = await connect(bus.url, "skyledger monitor")
    try:
        js = client.jetstream()
        durable = f"{bus.prefix}_t0_ingest_{job.hash[:16]}"
        try:
            info = await js.consumer_info(bus.alerts_stream, durable)
        except NotFoundError:
            try:
                stream = await js.stream_info(bus.alerts_stream)
            except NotFoundError:
                return 0
            return int(stream.state.messages)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
    finally:
        await client.close()


@dataclass(frozen=True)
class TierLag:
    """How far a tier is: its slowest projector's slowest shard, and the head."""

    tier: str
    position: int
    head: int

    @property
    def lag(self) -> int:
        """Return the head minus the tier's position."""
        return max(0, self.head - self.position)


def lags(ledger: Ledger, job: Job, shards: int) -> list[TierLag]:
    """Return each tier's position and lag behind the ledger's head."""
    tiers = build_tiers(JobUnits(job, sources=[]), ledger, "monitor")
    head = ledger.head()
    found = []
    for tier in TIERS:
        names = [
            tracking_of(p, s)
            for p in tiers.of(tier)
            for s in ([None] if p.whole_pass or shards <= 1 else Shard.all(shards))
        ]
        position = min((ledger.tracked(n) for n in names), default=head)
        found.append(TierLag(tier, position, head))
    return found


def settle(
    ledger: Ledger,
    bus: Bus,
    job: Job,
    shards: int,
    *,
    timeout_s: float = 120.0,
    quiet_s: float = 1.5,
    alive: Callable[[], None] | None = None,
) -> list[TierLag]:
    """Wait until every alert was ingested and every tier reached the head, and stayed
    there for ``quiet_s``; return the lags. ``alive`` is called while waiting (to raise
    if a process died). TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    since: float | None = None
    seen_head = -1
    while True:
        if alive is not None:
            alive()
        pending = asyncio.run(alerts_pending(bus, job))
        found = lags(ledger, job, shards)
        head = found[0].head if found else 0
        if pending == 0 and all(t.lag == 0 for t in found) and head == seen_head:
            since = since or time.monotonic()
            if time.monotonic() - since >= quiet_s:
                return found
        else:
            since = None
        seen_head = head
        if time.monotonic() > deadline:
            msg = f"not settled after {timeout_s} s: {pending} alerts pending, lags {found}"
            raise TimeoutError(msg)
        time.sleep(0.3)


class LiveProcesses:
    """The relay and tier workers of a job as child processes (``skyledger relay`` and
    ``skyledger worker``), stopped with SIGTERM on exit."""

    def __init__(
        self,
        job_path: str,
        ledger_url: str,
        bus: Bus,
        workers: dict[str, int] | None = None,
        log_dir: str | None = None,
        extra_env: dict[str, str] | None = None,
        worker_args: Sequence[str] = (),
    ) -> None:
        self.job_path = job_path
        self.ledger_url = ledger_url
        self.bus = bus
        self.workers = workers if workers is not None else dict.fromkeys(TIERS, 1)
        self.log_dir = log_dir
        self.env = os.environ | (extra_env or {})
        self.worker_args = list(worker_args)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _common(self) -> list[str]:
        return ["--ledger", self.ledger_url, "--nats", self.bus.url, "--prefix", self.bus.prefix]

    def command(self, role: str) -> list[str]:
        """Return the command line of a role: ``relay`` or ``TIER#N``."""
        cli = [sys.executable, "-m", "runners.cli"]
        if role == "relay":
            return [*cli, "relay", *self._common(), "--shards", str(self.bus.shards)]
        tier = role.split("#")[0]
        return [*cli, "worker", tier, self.job_path, *self._common(), *self.worker_args]

    def roles(self) -> Iterator[str]:
        """Yield the roles to start: the relay, then each tier's workers."""
        yield "relay"
        for tier, n in self.workers.items():
            for i in range(n):
                yield f"{tier}#{i}"

    def start(self, role: str) -> subprocess.Popen[bytes]:
        """Start (or restart) one role's process."""
        out: int | None = subprocess.DEVNULL
        if self.log_dir is not None:
            path = os.path.join(self.log_dir, role.replace("#", "-") + ".log")
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        proc = subprocess.Popen(
            self.command(role), stdout=out, stderr=subprocess.STDOUT, env=self.env,
            start_new_session=True,
        )  # fmt: skip
        if isinstance(out, int) and out > 0:
            os.close(out)
        self.procs[role] = proc
        return proc

    def start_all(self) -> None:
        """Start the relay and every worker."""
        for role in self.roles():
            self.start(role)

    def check(self) -> None:
        """Raise RuntimeError if a process exited."""
        for role, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                raise RuntimeError(f"{role} exited with code {code}{self._tail(role)}")

    def _tail(self, role: str) -> str:
        if self.log_dir is None:
            return ""
        path = os.path.join(self.log_dir, role.replace("#", "-") + ".log")
        with contextlib.suppress(OSError), open(path, errors="replace") as fh:
            return ":\n" + "".join(fh.readlines()[-30:])
        return ""

    def kill(self, role: str, sig: int = signal.SIGKILL) -> None:
        """Send a signal to one role's process and wait for it to end."""
        proc = self.procs[role]
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        proc.wait(30)

    def stop(self, timeout_s: float = 30.0) -> dict[str, int | None]:
        """SIGTERM every process (they finish their batch), SIGKILL what is left after
        ``timeout_s``; return the exit codes."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + timeout_s
        codes: dict[str, int | None] = {}
        for role, proc in self.procs.items():
            try:
                codes[role] = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[role] = proc.wait(5)
        return codes

    def __enter__(self) -> LiveProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def packets_of(paths: Sequence[str]) -> Iterator[bytes]:
    """Yield the packet bytes of alert files, folders or archives, one per alert."""
    from units import Alert
    from units.sources import iter_packets

    for item in iter_packets(paths):
        if isinstance(item, Alert):
            yield item.packet
