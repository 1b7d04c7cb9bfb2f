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
import faulthandler
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import nats.errors
from nats.js.errors import NotFoundError

from skyledger.ledger import Ledger, LedgerError, RunHeartbeat, Shard, digest_bytes
from skyledger.projections.projector import tracking_of
from skyledger.projections.t0 import Ingest
from skyledger.runners.bus import Bus, connect
from skyledger.runners.embedded import free_port
from skyledger.runners.job import Job
from skyledger.runners.tiers import TIERS, JobUnits, build_tiers
from skyledger.runners.worker import stream_position_name

__all__ = [
    "LiveOutcome",
    "LiveProcesses",
    "Monitor",
    "TierLag",
    "packets_of",
    "publish_packets",
    "run_live",
    "run_until_signal",
    "settle",
    "stop_stuck",
    "tier_lags",
    "tier_names",
]

T = TypeVar("T")
_MARKS = 1000  # events after the slowest tier looked at for heartbeats (more: a backlog)


def run_until_signal(work: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run ``work(stop)`` in an event loop; SIGTERM or SIGINT sets ``stop``, so the work
    finishes its batch, acknowledges and returns. SIGUSR1 writes every thread's Python
    stack to stderr (the process's log) and the work goes on: where a process that seems
    stuck is (it works even while the event loop is blocked)."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    async def main() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await work(stop)

    return asyncio.run(main())


def stop_stuck(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL a process that did not stop when asked, after SIGUSR1 had it write its
    threads' stacks to its log (:func:`run_until_signal`); return its exit code."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
    proc.kill()
    return proc.wait(10)


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


class Monitor:
    """How far live mode is, asked often (progress, ``settle``, benchmarks): the names
    to look up are made once, from the job's units (making them is not cheap)."""

    def __init__(
        self, ledger: Ledger, bus: Bus, job: Job, shards: int, subject: str | None = None
    ) -> None:
        self.ledger = ledger
        self.bus = bus
        units = JobUnits(job, sources=[])
        ingest = Ingest(ledger, units.shapers, units.filters, "monitor", {})
        self.stream_name = stream_position_name(ingest, bus, subject)
        self.names = tier_names(ledger, units, shards)

    async def alerts_pending(self) -> int:
        """Return how many alert messages T0 has not ingested yet: the stream's last
        sequence number minus T0's position in it (kept in the ledger)."""
        client = await connect(self.bus.url, "skyledger monitor")
        try:
            js = client.jetstream()
            try:
                stream = await js.stream_info(self.bus.alerts_stream)
            except NotFoundError:
                return 0
            last = int(stream.state.last_seq or 0)
        finally:
            await client.close()
        return max(0, last - self.ledger.tracked(self.stream_name))

    def lags(self) -> list[TierLag]:
        """Return each tier's position and the ledger's head (see :func:`tier_lags`)."""
        return tier_lags(self.ledger, self.names)


def tier_names(ledger: Ledger, units: JobUnits, shards: int) -> dict[str, list[str]]:
    """Return the tracking names of each tier's projectors (and shards) of a job."""
    tiers = build_tiers(units, ledger, "monitor")
    return {
        tier: [
            tracking_of(p, s)
            for p in tiers.of(tier)
            for s in ([None] if p.whole_pass or shards <= 1 else Shard.all(shards))
        ]
        for tier in TIERS
    }


def tier_lags(ledger: Ledger, names: dict[str, list[str]]) -> list[TierLag]:
    """Return each tier's position (its slowest projector's slowest shard) and the
    ledger's head, not counting the workers' heartbeats at its end: no tier reads
    them, and they would keep a quiet ledger's tiers behind until their next sweep."""
    head = ledger.head()
    every = ledger.tracked_many(n for tier_of in names.values() for n in tier_of)
    positions = {
        tier: min((every[n] for n in tier_of), default=head) for tier, tier_of in names.items()
    }
    lowest = min(positions.values(), default=head)
    if lowest < head:
        marks = ledger.marks(lowest, _MARKS)
        if len(marks) < _MARKS:  # all of them: the last that is not a heartbeat
            facts = [p for p, kind, _ in marks if kind != RunHeartbeat.__name__]
            head = max(facts, default=lowest)
    return [TierLag(tier, position, head) for tier, position in positions.items()]


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
    if a process died). TimeoutError once ``timeout_s`` pass with no progress: no alert
    ingested, no tier moved and the head still (a slow machine only takes longer)."""
    deadline = time.monotonic() + timeout_s
    since: float | None = None
    seen_head = -1
    seen: tuple[int, tuple[int, ...]] | None = None
    monitor = Monitor(ledger, bus, job, shards)
    while True:
        if alive is not None:
            alive()
        try:
            pending = asyncio.run(monitor.alerts_pending())
            found = monitor.lags()
        except (LedgerError, OSError, nats.errors.Error) as exc:  # a server restarting
            if time.monotonic() > deadline:
                raise TimeoutError(f"not settled after {timeout_s} s: {exc}") from exc
            time.sleep(0.5)
            continue
        head = found[0].head if found else 0
        progress = (pending, (head, *(t.position for t in found)))
        if progress != seen:
            seen, deadline = progress, time.monotonic() + timeout_s
        if pending == 0 and all(t.lag == 0 for t in found) and head == seen_head:
            since = since or time.monotonic()
            if time.monotonic() - since >= quiet_s:
                return found
        else:
            since = None
        seen_head = head
        if time.monotonic() > deadline:
            msg = (f"not settled: no progress for {timeout_s} s, {pending} alerts pending, "
                   f"lags {found}")  # fmt: skip
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
        metrics: bool = False,
    ) -> None:
        self.job_path = job_path
        self.ledger_url = ledger_url
        self.bus = bus
        self.workers = workers if workers is not None else dict.fromkeys(TIERS, 1)
        self.log_dir = log_dir
        self.env = os.environ | (extra_env or {})
        self.worker_args = list(worker_args)
        self.metrics = metrics
        self.ports: dict[str, int] = {}  # role -> port of /metrics and /healthz
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _common(self) -> list[str]:
        return ["--ledger", self.ledger_url, "--nats", self.bus.url, "--prefix", self.bus.prefix]

    def command(self, role: str) -> list[str]:
        """Return the command line of a role: ``relay`` or ``TIER#N``."""
        cli = [sys.executable, "-m", "skyledger.runners.cli"]
        served: list[str] = []
        if self.metrics:
            port = self.ports.setdefault(role, free_port())
            served = ["--metrics-port", str(port)]
        if role == "relay":
            return [*cli, "relay", *self._common(), "--shards", str(self.bus.shards), *served]
        tier = role.split("#")[0]
        return [*cli, "worker", tier, self.job_path, *self._common(), *self.worker_args, *served]

    def metrics_url(self, role: str) -> str:
        """Return the base URL of a role's /metrics and /healthz (``metrics=True``)."""
        return f"http://127.0.0.1:{self.ports[role]}"

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
                codes[role] = stop_stuck(proc)
        return codes

    def __enter__(self) -> LiveProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def packets_of(paths: Sequence[str]) -> Iterator[bytes]:
    """Yield the packet bytes of alert files, folders or archives, one per alert."""
    from skyledger.units import Alert
    from skyledger.units.sources import iter_packets

    for item in iter_packets(paths):
        if isinstance(item, Alert):
            yield item.packet


@dataclass
class LiveOutcome:
    """How a ``skyledger live`` session ended."""

    ledger: str
    nats: str
    published: int
    lags: list[TierLag]
    exit_codes: dict[str, int | None]


def run_live(
    job_path: str,
    job: Job,
    ledger_url: str | None,
    nats_url: str | None,
    *,
    prefix: str = "skyledger",
    shards: int = 16,
    workers: dict[str, int] | None = None,
    sources: Sequence[str] = (),
    rate: float | None = None,
    until_idle: bool = False,
    log_dir: str | None = None,
    show: Callable[[list[TierLag], int, dict[str, str]], None] | None = None,
    stop: threading.Event | None = None,
) -> LiveOutcome:
    """Run a job live: servers (embedded when no URL is given), the relay and tier
    workers as processes, the source files published onto the bus if given; show the
    lags every second until ``stop`` is set (or, with ``until_idle``, until everything
    published is through every tier); then stop the processes (SIGTERM)."""
    from skyledger.ledger import Ledger
    from skyledger.runners.embedded import EmbeddedNats, EmbeddedPostgres

    stop = stop or threading.Event()
    with contextlib.ExitStack() as stack:
        if ledger_url is None:
            pg = stack.enter_context(EmbeddedPostgres())
            ledger_url = pg.create_database("skyledger")
        if nats_url is None:
            nats_url = stack.enter_context(EmbeddedNats()).url
        bus = Bus(nats_url, prefix=prefix, shards=shards)
        ledger = stack.enter_context(Ledger.open(ledger_url))
        if ledger.backend != "postgres":
            from skyledger.ledger import ConfigError

            raise ConfigError(f"--ledger {ledger.url}: live mode needs a PostgreSQL ledger")
        procs = stack.enter_context(LiveProcesses(job_path, ledger_url, bus, workers, log_dir))
        procs.start("relay")
        shards = asyncio.run(_wait_for_stream(bus))  # an existing bus's count wins
        for role in procs.roles():
            if role != "relay":
                procs.start(role)
        published = [0]
        publisher: threading.Thread | None = None
        if sources:

            def publish() -> None:
                published[0] = asyncio.run(publish_packets(bus, packets_of(sources), rate=rate))

            publisher = threading.Thread(target=publish, daemon=True)
            publisher.start()
        found: list[TierLag] = []
        quiet_since: float | None = None
        monitor = Monitor(ledger, bus, job, shards)
        while not stop.is_set():
            procs.check()
            pending = asyncio.run(monitor.alerts_pending())
            found = monitor.lags()
            if show is not None:
                urls = {"ledger": ledger.url, "nats": nats_url}
                show(found, pending, urls)
            done = publisher is None or not publisher.is_alive()
            if until_idle and done and pending == 0 and all(t.lag == 0 for t in found):
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 2.0:
                    break
            else:
                quiet_since = None
            stop.wait(1.0)
        codes = procs.stop()
        return LiveOutcome(redact_url(ledger_url), nats_url, published[0], found, codes)


async def _wait_for_stream(bus: Bus, timeout_s: float = 60.0) -> int:
    """Wait for the relay to make the notifications stream; return its shard count."""
    client = await connect(bus.url, "skyledger live")
    try:
        return await bus.shard_count(client.jetstream(), wait_s=timeout_s)
    finally:
        await client.close()


def redact_url(url: str) -> str:
    """Return a URL with any password hidden."""
    from skyledger.ledger.settings import redact

    return redact(url)
