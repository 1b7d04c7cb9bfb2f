"""Live mode on NATS JetStream: a burst beside a local run, latency of a steady stream,
and T2 scale-out, on embedded PostgreSQL and NATS started by the bench.

    python bench/live.py [--alerts 10000] [--latency-s 60] [--shards 16]
                         [--scale-alerts 4000] [--mcmc-niter 8192]
                         [--skip-latency] [--skip-scale]

The job is the demo's (``examples/demo.yaml``: its two channels, the light-curve
combiner, T2LightCurveFeatures with Bazin fits and T2CandidateScore) with its T3
ReportReactor replaced by a WebhookReactor of the same selection, posting to an HTTP
receiver thread of this process that always answers 200: a report is of "selection"
scope (redrawn per pass, so what it records depends on timing), a webhook of "state"
scope reacts to each state as it comes, which a live T3 worker can follow. The alerts
are simulated from the real ZTF night (``../shared/data/ztf/night``, or ``--night``):
copies of real packets as new stocks (``SimulatedSource``, cutouts kept), made before
anything is timed.

burst: a local run (``LocalRunner``, one process, no read model, the packets decoded by
the run as the live T0 worker decodes them) of the ``--alerts`` alerts on a fresh
database; then, on another fresh database of the same server, the relay and one worker
per tier as processes (``LiveProcesses``), ready (their consumers exist, so their
start-up sweeps are done), and the same packets published at once on the alerts stream
(``publish_packets``, no rate). ``burst_s`` runs from the first publication to the
first moment at which every alert is acknowledged by T0 and every tier's position
(its slowest projector's slowest shard) is at the ledger's head, which then holds for
1.5 s (polled every 0.2 s; the quiet period is not counted). ``local_s`` is the local
run's wall time; ``burst_ratio`` = local_s / burst_s (target >= 0.8). The T2 results,
states and webhook intents of both ledgers are compared (ids): live equals local.

latency: on the same processes and ledger, new alerts at half the burst's live rate
(at most 333 alerts/s, Rubin's average) for ``--latency-s`` seconds. Each packet's
publication time is taken as it is sent (``on_sent``); a thread follows the ledger
(``Ledger.follow``: LISTEN/NOTIFY) and stamps when each AlertReceived, StateCombined and
ResultDerived arrives in it. An alert's latency runs from its publication to the
arrival of the last T2 result of its state (alert -> AlertReceived by the packet's
digest -> StateCombined.alert -> ResultDerived.causation[0]); alerts that no channel
accepted make no state and are left out (counted). p50 and p99 are of these arrival
stamps (target p99 <= 2 s). The results' own ``time`` (set by the worker as it builds
the event, a little before its commit) gives a lower bound, printed beside them; the
arrival stamps are later than the commit by the follower's wake-up and read. So are the
stages: publication to AlertReceived (T0), to StateCombined (T1), and StateCombined to
the last T2 result.

scale-out: T2 throughput of a CPU-bound unit with one and with two T2 worker processes.
The demo's T2 costs about 2 ms a state (Bazin fits with light_curve's default 128 MCMC
iterations), too little for the unit's work to dominate the tier's; so this phase's job
is the demo's T0 and T1 with one T2 unit, ``T2CostlyFeatures`` (``bench/live_units.py``:
the demo's features with ``--mcmc-niter`` MCMC iterations, 8192 by default, about 30 ms
a state), registered by the bench rather than installed: every process of this phase is
started through ``bench/live_worker.py``, the CLI with that module imported. Each run
has a fresh database and bus prefix and the same ``--scale-alerts`` alerts: the relay,
T0 and T1 workers ingest them and make the states, settle, and are stopped; then the
T2 workers start (nothing else runs: no relay, no other tier) and catch up from the
ledger (their start-up sweep, then the stored notifications). A run's T2 time is from
the first T2 worker's RunStarted (its ``time``, after its imports) to the moment every
shard's T2 position reached T0's (all T2 can do; polled every 0.2 s); the time from
launching the processes is printed beside. ``scale_2_workers`` = rate with two / rate
with one (target >= 1.6 on 2 cores).

After the burst and the scale-out runs, each worker's counts (from its RunFinished) are
printed: messages, acknowledged, handed back (nak), catch-ups, events stored, sweeps.

The last line (one line):

    RESULT burst_s=... local_s=... burst_ratio=... p50_s=... p99_s=... scale_2_workers=...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import live_units  # noqa: F401  (registers T2CostlyFeatures, the scale-out's unit)
import yaml
from local_run import NIGHT, ListSource, limited, source  # bench/, beside this file
from nats.js.errors import NotFoundError

from skyledger.ledger import (
    AlertReceived,
    Event,
    Ledger,
    ReactionIntended,
    ResultDerived,
    RunFinished,
    RunStarted,
    StateCombined,
    digest_bytes,
)
from skyledger.runners.bus import Bus, connect
from skyledger.runners.embedded import EmbeddedNats, EmbeddedPostgres
from skyledger.runners.job import Job, parse_job
from skyledger.runners.live import LiveProcesses, Monitor, publish_packets
from skyledger.runners.local import LocalRunner
from skyledger.runners.tiers import TIERS
from skyledger.units import Alert

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.yaml"
LAUNCHER = Path(__file__).resolve().parent / "live_worker.py"  # the CLI, bench units known
MCMC_NITER = 8192  # the scale-out unit's MCMC iterations: about 30 ms of fitting per state
BURST_TARGET = 0.8  # local time / live time
P99_TARGET = 2.0  # seconds, publication to T2 result
SCALE_TARGET = 1.6  # T2 rate with two processes / with one
RUBIN_RATE = 333.0  # alerts per second, Rubin's average
POLL_S = 0.2
QUIET_S = 1.5


def say(text: str) -> None:
    print(text, flush=True)


def job_text(url: str) -> str:
    """Return the demo's job with its report replaced by a webhook of the same selection."""
    demo = yaml.safe_load(DEMO.read_text())
    demo["name"] = "bench-live"
    select = demo["t3"][0].get("select", {})
    demo["t3"] = [{"unit": "WebhookReactor", "config": {"url": url}, "select": select}]
    return str(yaml.safe_dump(demo, sort_keys=False))


def scale_job_text(niter: int) -> str:
    """Return the demo's T0 and T1 with one CPU-bound T2 unit and no T3."""
    demo = yaml.safe_load(DEMO.read_text())
    demo["name"] = "bench-live-scale"
    demo["t2"] = [{"unit": "T2CostlyFeatures", "config": {"mcmc_niter": niter}}]
    del demo["t3"]
    return str(yaml.safe_dump(demo, sort_keys=False))


# -- the webhook receiver ------------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    """An HTTP receiver on 127.0.0.1 that answers 200 to every POST and counts the
    Idempotency-Keys it got."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.keys: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/hook"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self._thread.join(30)
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.keys[self.headers.get("Idempotency-Key", "")] += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the output clean."""


# -- alerts --------------------------------------------------------------------------------


class Packets(ListSource):
    """The simulated packets as bytes: the local run decodes them (timed), as live T0 does."""

    decoded = False


def simulated(night: Path, alerts: int) -> list[Alert]:
    return list(limited(source(night, alerts), alerts))


# -- watching the live processes -----------------------------------------------------------


class Positions:
    """Where each tier of a job is, and the alerts T0 has not ingested yet (a monitor
    made once: making the job's units on every poll would take CPU from the workers)."""

    def __init__(self, ledger: Ledger, job: Job, shards: int, bus: Bus) -> None:
        self.ledger = ledger
        self.monitor = Monitor(ledger, bus, job, shards)

    def of(self, tier: str) -> int:
        """Return the tier's position: its slowest projector's slowest shard."""
        return min(self.ledger.tracked(n) for n in self.monitor.names[tier])

    def pending(self) -> int:
        """Return the alerts T0 has not ingested yet."""
        return asyncio.run(self.monitor.alerts_pending())


async def _consumers_exist(bus: Bus, wanted: Sequence[tuple[str, str]]) -> bool:
    client = await connect(bus.url, "skyledger bench monitor")
    try:
        js = client.jetstream()
        for stream, durable in wanted:
            try:
                await js.consumer_info(stream, durable)
            except NotFoundError:
                return False
        return True
    finally:
        await client.close()


def wait_ready(
    bus: Bus, job: Job, tiers: Sequence[str], alive: Callable[[], None], timeout_s: float = 120
) -> float:
    """Wait until the durable consumers of the tiers' workers exist (a worker makes its
    consumer after its start-up sweep); return the seconds waited."""
    started = time.perf_counter()
    wanted = [(bus.events_stream, f"{bus.prefix}_{t}_{job.hash[:16]}") for t in tiers]
    while not asyncio.run(_consumers_exist(bus, wanted)):
        alive()
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"workers of {', '.join(tiers)} not ready after {timeout_s} s")
        time.sleep(POLL_S)
    return time.perf_counter() - started


def wait_done(
    positions: Positions,
    bus: Bus,
    job: Job,
    tiers: Sequence[str],
    alive: Callable[[], None],
    timeout_s: float,
) -> float:
    """Wait until no alert is pending and every one of ``tiers`` is at the ledger's head,
    and that held for QUIET_S with the head unchanged; return the wall time (time.time())
    of the first poll that saw it."""
    ledger = positions.ledger
    deadline = time.monotonic() + timeout_s
    first: float | None = None
    seen_head = -1
    last_report = time.monotonic()
    while True:
        alive()
        now = time.time()
        pending = positions.pending() if "t0" in tiers else 0
        head = ledger.head()
        at = {tier: positions.of(tier) for tier in tiers}
        if pending == 0 and all(p >= head for p in at.values()):
            if first is None or head != seen_head:
                first = now
            elif time.time() - first >= QUIET_S:
                return first
        else:
            first = None
        seen_head = head
        if time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            behind = " ".join(f"{t}={max(0, head - p):,}" for t, p in at.items())
            say(f"  ... {pending:,} alerts pending, head {head:,}, behind: {behind}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout_s} s: {pending} pending, at {at}")
        time.sleep(POLL_S)


class BenchProcesses(LiveProcesses):
    """LiveProcesses started through ``bench/live_worker.py``: the CLI with the bench's
    own units registered (a worker builds every unit of its job)."""

    def command(self, role: str) -> list[str]:
        cli = super().command(role)
        assert cli[1:3] == ["-m", "skyledger.runners.cli"], cli
        return [sys.executable, str(LAUNCHER), *cli[3:]]


@contextlib.contextmanager
def live(
    job_path: Path,
    url: str,
    bus: Bus,
    workers: dict[str, int],
    logs: Path,
    relay: bool = True,
    kind: type[LiveProcesses] = LiveProcesses,
) -> Iterator[LiveProcesses]:
    """Start the relay (if ``relay``) and the workers; stop them all on exit."""
    procs = kind(str(job_path), url, bus, workers, str(logs))
    with procs:
        for role in procs.roles():
            if role != "relay" or relay:
                procs.start(role)
        yield procs


def publish(bus: Bus, packets: Sequence[bytes], rate: float | None = None) -> list[float]:
    """Publish packets on the alerts stream; return each one's publication time."""
    sent: list[float] = []

    def on_sent(n: int, at: float) -> None:
        sent.append(at)

    count = asyncio.run(publish_packets(bus, packets, rate=rate, on_sent=on_sent))
    if count != len(packets):
        raise RuntimeError(f"published {count} of {len(packets)} packets")
    return sent


def worker_stats(ledger: Ledger, after: int = 0) -> list[str]:
    """Return a line per worker that recorded its end after ``after``: its tier and counts."""
    lines = []
    for event in ledger.read(after + 1, types=[RunFinished]):
        assert isinstance(event, RunFinished)
        stats = dict(event.summary)
        tier = stats.pop("tier", None)
        if tier is None:  # a local run
            continue
        keys = ("messages", "acked", "handed_back", "catch_ups", "stored", "alerts", "sweeps")
        counts = " ".join(f"{k}={stats.get(k)}" for k in (*keys, "batches", "errors"))
        lines.append(f"        {tier} worker: {counts} {stats.get('last_error') or ''}".rstrip())
    return lines


def ids_of(ledger: Ledger, types: Sequence[type[Event]], start: int = 1) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for event in ledger.read(start, types=types):
        found[type(event).__name__].add(event.id)
    return found


# -- burst -----------------------------------------------------------------------------


def local_run(url: str, text: str, alerts: list[Alert]) -> float:
    Packets.alerts = alerts
    with Ledger.open(url) as ledger:
        started = time.perf_counter()
        runner = LocalRunner(
            parse_job(text), text, ledger, [Packets({"paths": ["-"]})], read_model=False
        )
        summary = runner.run()
        elapsed = time.perf_counter() - started
    read = summary.alerts.get("read")
    if read != len(alerts) or summary.status not in ("ok", "failed units"):
        raise SystemExit(f"local run {summary.status}: {read} of {len(alerts)} alerts read")
    return elapsed


# -- latency -------------------------------------------------------------------------------


class Follower(threading.Thread):
    """Follows the ledger from a position and stamps when each event of some types
    arrives in it (time.time())."""

    TYPES = (AlertReceived, StateCombined, ResultDerived)

    def __init__(self, url: str, after: int) -> None:
        super().__init__(daemon=True, name="bench-follower")
        self.url = url
        self.after = after
        self.stop = threading.Event()
        self.arrived: dict[str, float] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Ledger.open(self.url) as ledger:
                for event in ledger.follow(self.after, self.TYPES, wait_s=0.5, stop=self.stop):
                    self.arrived.setdefault(event.id, time.time())
        except BaseException as exc:  # reported by the main thread
            self.error = exc


@dataclass
class Latencies:
    arrived: list[float] = field(default_factory=list)  # by the follower's stamps
    alerts: list[float] = field(default_factory=list)  # publication to AlertReceived
    states: list[float] = field(default_factory=list)  # publication to StateCombined
    t2: list[float] = field(default_factory=list)  # StateCombined to its last T2 result
    made: list[float] = field(default_factory=list)  # by the results' own time
    no_alert: int = 0
    no_state: int = 0
    no_result: int = 0


def latencies(
    ledger: Ledger, after: int, packets: Sequence[bytes], sent: Sequence[float],
    arrived: dict[str, float], entries: int,
) -> Latencies:  # fmt: skip
    alert_of: dict[str, str] = {}
    states_of: dict[str, list[str]] = defaultdict(list)
    results_of: dict[str, list[ResultDerived]] = defaultdict(list)
    for event in ledger.read(after + 1, types=Follower.TYPES):
        if isinstance(event, AlertReceived):
            alert_of[event.digest] = event.id
        elif isinstance(event, StateCombined) and event.alert:
            states_of[event.alert].append(event.id)
        elif isinstance(event, ResultDerived) and event.causation:
            results_of[event.causation[0]].append(event)
    found = Latencies()
    for data, at in zip(packets, sent, strict=True):
        alert = alert_of.get(digest_bytes(data))
        if alert is None:
            found.no_alert += 1
            continue
        states = states_of.get(alert, [])
        if not states:
            found.no_state += 1
            continue
        results = [r for s in states for r in results_of.get(s, [])]
        if len(results) < entries * len(states):
            found.no_result += 1
            continue
        found.arrived.append(max(arrived[r.id] for r in results) - at)
        found.alerts.append(arrived[alert] - at)
        found.states.append(max(arrived[s] for s in states) - at)
        found.t2.append(found.arrived[-1] + at - max(arrived[s] for s in states))
        found.made.append(max(r.time.timestamp() for r in results) - at)
    return found


def quantile(values: Sequence[float], q: float) -> float:
    """Return the nearest-rank q-quantile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- scale-out -----------------------------------------------------------------------------


def scale_run(
    n: int, pg: EmbeddedPostgres, nats_url: str, job_path: Path, job: Job, shards: int,
    packets: Sequence[bytes], logs: Path, timeout_s: float,
) -> tuple[float, float, int]:  # fmt: skip
    """Return (T2 seconds from the first T2 worker's start, seconds from launch, states)."""
    kind = BenchProcesses
    url = pg.create_database(f"scale{n}")
    bus = Bus(nats_url, prefix=f"scale{n}", shards=shards)
    with Ledger.open(url) as ledger:
        positions = Positions(ledger, job, shards, bus)
        feed_tiers = ("t0", "t1")
        feed = live(job_path, url, bus, {"t0": 1, "t1": 1}, logs / f"scale{n}-feed", True, kind)
        with feed as procs:
            wait_ready(bus, job, feed_tiers, procs.check)
            publish(bus, packets)
            wait_done(positions, bus, job, feed_tiers, procs.check, timeout_s)
        head = ledger.head()
        upstream = positions.of("t0")  # how far T2 can go: its upstream is T0's decisions
        states = sum(1 for _ in ledger.read(types=[StateCombined]))
        say(f"  {n} T2: {len(packets):,} alerts ingested, {states:,} states; T2 starts")
        t2 = live(job_path, url, bus, {"t2": n}, logs / f"scale{n}-t2", False, kind)
        with t2 as procs:
            launched = time.time()
            deadline = time.monotonic() + timeout_s
            while positions.of("t2") < upstream:
                procs.check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"T2 with {n} workers not done after {timeout_s} s")
                time.sleep(POLL_S)
            done = time.time()
            t2_head = ledger.head()
        for line in worker_stats(ledger, t2_head):
            say(line)
        starts = [e.time.timestamp() for e in ledger.read(head + 1, types=[RunStarted])]
    if len(starts) < n:
        raise RuntimeError(f"{len(starts)} T2 workers recorded their start, not {n}")
    return done - min(starts), done - launched, states


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts of the burst")
    parser.add_argument("--latency-s", type=float, default=60.0, help="steady stream length")
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument(
        "--scale-alerts", type=int, default=4000, help="alerts whose states T2 works on"
    )
    parser.add_argument(
        "--mcmc-niter", type=int, default=MCMC_NITER, help="scale-out unit's MCMC iterations"
    )
    parser.add_argument("--night", type=Path, default=NIGHT)
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="per phase")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()

    latency_max = 0 if args.skip_latency else math.ceil(RUBIN_RATE * args.latency_s)
    started = time.perf_counter()
    alerts = simulated(args.night, max(args.alerts, args.scale_alerts) + latency_max)
    burst = alerts[: args.alerts]
    rest = [a.packet for a in alerts[args.alerts :]]
    say(f"simulated {len(alerts):,} alerts in {time.perf_counter() - started:.1f} s")

    with (
        EmbeddedPostgres() as pg,
        EmbeddedNats() as nats_server,
        Receiver() as hook,
        tempfile.TemporaryDirectory(prefix="skyledger-bench-live-") as tmp,
    ):
        text = job_text(hook.url)
        job = parse_job(text)
        job_path = Path(tmp) / "job.yaml"
        job_path.write_text(text)
        logs = Path(tmp) / "logs"
        for sub in ("burst", "scale1-feed", "scale1-t2", "scale2-feed", "scale2-t2"):
            (logs / sub).mkdir(parents=True)

        # burst: local, then live
        local_url = pg.create_database("local")
        local_s = local_run(local_url, text, burst)
        local_keys = sum(hook.keys.values())
        say(
            f"local   {len(burst):,} alerts in {local_s:7.2f} s"
            f"  {len(burst) / local_s:6.0f} alerts/s  (one process, {local_keys:,} webhooks)"
        )
        hook.keys.clear()

        live_url = pg.create_database("live")
        bus = Bus(nats_server.url, prefix="live", shards=args.shards)
        with (
            Ledger.open(live_url) as ledger,
            live(job_path, live_url, bus, dict.fromkeys(TIERS, 1), logs / "burst") as procs,
        ):
            positions = Positions(ledger, job, args.shards, bus)
            ready = wait_ready(bus, job, TIERS, procs.check)
            say(f"live    relay and 4 workers ready in {ready:.1f} s")
            sent = publish(bus, [a.packet for a in burst])
            say(f"live    {len(sent):,} alerts published in {sent[-1] - sent[0]:.2f} s")
            done = wait_done(positions, bus, job, TIERS, procs.check, args.timeout_s)
            burst_s = done - sent[0]
            live_rate = len(burst) / burst_s
            say(
                f"live    {len(burst):,} alerts in {burst_s:7.2f} s  {live_rate:6.0f} alerts/s"
                f"  (relay + a worker per tier, {sum(hook.keys.values()):,} webhooks)"
            )
            ratio = local_s / burst_s
            verdict = "ok" if ratio >= BURST_TARGET else "BELOW"
            say(f"burst   local / live = {ratio:.3f} (target >= {BURST_TARGET}: {verdict})")
            compared = (StateCombined, ResultDerived, ReactionIntended)
            with Ledger.open(local_url) as local:
                expected = ids_of(local, compared)
            found = ids_of(ledger, compared)
            same = all(found[t.__name__] == expected[t.__name__] for t in compared)
            counts = ", ".join(f"{len(found[t.__name__]):,} {t.__name__}" for t in compared)
            say(f"        live {'equals' if same else 'DIFFERS FROM'} local: {counts}")
            twice = sum(1 for n in hook.keys.values() if n > 1)
            if twice:
                say(f"        {twice:,} webhook keys delivered more than once")

            p50 = p99 = float("nan")
            if not args.skip_latency:
                rate = min(RUBIN_RATE, live_rate / 2)
                packets = rest[: math.ceil(rate * args.latency_s)]
                say(
                    f"latency {len(packets):,} alerts at {rate:.0f} alerts/s"
                    f" for {args.latency_s:.0f} s"
                )
                after = ledger.head()
                follower = Follower(live_url, after)
                follower.start()
                sent = publish(bus, packets, rate)
                wait_done(positions, bus, job, TIERS, procs.check, args.timeout_s)
                expected_n = sum(1 for _ in ledger.read(after + 1, types=Follower.TYPES))
                deadline = time.monotonic() + 60
                while len(follower.arrived) < expected_n and time.monotonic() < deadline:
                    if follower.error is not None:
                        raise RuntimeError(f"follower failed: {follower.error}")
                    time.sleep(POLL_S)
                follower.stop.set()
                follower.join(30)
                if len(follower.arrived) < expected_n:
                    msg = f"follower saw {len(follower.arrived)} of {expected_n} events"
                    raise RuntimeError(msg)
                lat = latencies(ledger, after, packets, sent, follower.arrived, len(job.t2))
                if not lat.arrived:
                    raise RuntimeError("no alert of the stream made a state with results")
                p50, p99 = quantile(lat.arrived, 0.5), quantile(lat.arrived, 0.99)
                verdict = "ok" if p99 <= P99_TARGET else "ABOVE"
                say(
                    f"latency {len(lat.arrived):,} alerts with T2 results"
                    f" ({lat.no_state:,} made no state, {lat.no_result:,} without every result,"
                    f" {lat.no_alert:,} not found)"
                )
                say(
                    f"latency {'T2 results (follower):':25s} p50 {p50:.3f} s  p99 {p99:.3f} s"
                    f"  max {max(lat.arrived):.3f} s (target p99 <= {P99_TARGET}: {verdict})"
                )
                stages = [
                    ("results' own time", lat.made),
                    ("to AlertReceived", lat.alerts),
                    ("to StateCombined", lat.states),
                    ("StateCombined to T2", lat.t2),
                ]
                for label, values in stages:
                    say(
                        f"latency {label + ':':25s} p50 {quantile(values, 0.5):.3f} s"
                        f"  p99 {quantile(values, 0.99):.3f} s  max {max(values):.3f} s"
                    )
            stopping = time.perf_counter()
            codes = procs.stop()
            say(f"        SIGTERM to exit: {time.perf_counter() - stopping:.1f} s, codes {codes}")
            for line in worker_stats(ledger):
                say(line)

        scale = float("nan")
        if not args.skip_scale:
            packets = [a.packet for a in alerts[: args.scale_alerts]]
            scale_text = scale_job_text(args.mcmc_niter)
            scale_path = Path(tmp) / "scale.yaml"
            scale_path.write_text(scale_text)
            scale_job = parse_job(scale_text)
            times = {}
            for n in (1, 2):
                t2_s, launched_s, states = scale_run(
                    n, pg, nats_server.url, scale_path, scale_job, args.shards, packets, logs,
                    args.timeout_s,
                )  # fmt: skip
                times[n] = t2_s
                say(
                    f"scale   {n} T2 process{'es' if n > 1 else '  '}: {states:,} states in"
                    f" {t2_s:6.2f} s  {states / t2_s:6.1f} states/s"
                    f"  ({launched_s:.2f} s from launch)"
                )
            scale = times[1] / times[2]
            verdict = "ok" if scale >= SCALE_TARGET else "BELOW"
            say(f"scale   two / one = {scale:.2f} (target >= {SCALE_TARGET}: {verdict})")

    say(
        f"RESULT burst_s={burst_s:.2f} local_s={local_s:.2f} burst_ratio={ratio:.3f} "
        f"p50_s={p50:.3f} p99_s={p99:.3f} scale_2_workers={scale:.2f}"
    )


if __name__ == "__main__":
    main()
