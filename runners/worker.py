"""A live tier worker: drives a job's projectors of one tier from NATS JetStream.

The projectors are those of the local run (``runners.tiers``), advanced by the same
``catch_up``; what the worker decides is when, and in which shard, to run them.
A worker binds to its tier's durable pull consumer on the notifications stream
(``runners.bus``), so that every process of a tier shares its messages. A message says
"events of this type in this shard, up to this position"; the worker claims that shard
of each projector consuming the type (a PostgreSQL advisory lock: one stock is never
worked on by two processes at once, and its events are taken in ledger order), catches
the projector up there from the ledger, and acknowledges the message once the
projector's position in the shard has passed the message's. If the shard is claimed by
another process, or an upstream tier has not got that far yet, the message is handed
back with a short delay (``nak``), to whichever process is free then. A T2 unit's retry
is such a delay too: T2 records the failed attempt and puts the state off
(``projections.t2``), and the message comes back when the retry is due, while the
worker goes on with other work.

The ledger is the truth and the bus only wakes: at start, and whenever the consumer has
been idle for ``sweep_s``, a worker catches up every shard it can claim, so a message
lost or never sent delays work, never loses it. A projector's output and its position
are recorded in one transaction (``projections.projector``), so a worker killed at any
moment leaves nothing half-done; its claims die with its connection and its
unacknowledged messages are redelivered after ``ack_wait_s``. While a long catch-up
runs, the worker tells JetStream it is still working on the messages (``in_progress``),
for up to ``stuck_after_s``: past that it takes the work for stuck, writes its threads'
stacks to its log, answers /healthz with 503 and lets the messages go to other workers.

T0 workers also ingest alert packets from the alerts stream: a batch of messages is
decoded, shaped and appended, then the channels decide on the new alerts (with the
filters' verdicts taken while the packets were decoded), and only then are the packets
acknowledged. Several T0 processes on one subject append alerts in the order each
receives them; one alerting stock's alerts come minutes apart, but a test or a replay
that publishes them back to back should run one T0 process (see docs/operations.md).

Blocking work (the ledger, the units) runs on one thread per worker; the asyncio loop
keeps fetching, acknowledging and extending deadlines meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import math
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import nats.errors
import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from skyledger.ledger import Ledger, LedgerError, RunFinished, Shard, TrackingConflict, shard_of
from skyledger.ledger.codec import topic_of
from skyledger.projections.projector import (
    Projector,
    Topics,
    catch_up,
    catch_up_shards,
    tracking_of,
)
from skyledger.projections.t0 import Ingest
from skyledger.runners import heartbeat
from skyledger.runners.bus import Bus, connect
from skyledger.runners.job import Job
from skyledger.runners.metrics import LiveMetrics
from skyledger.runners.retrying import until_done
from skyledger.runners.tiers import TIERS, JobUnits, build_tiers, register_configs, run_started
from skyledger.units import Blob
from skyledger.units.contracts import StreamSource

__all__ = ["TierWorker", "WorkerStats", "fetch_soon", "stream_position_name"]

log = logging.getLogger("skyledger.worker")
T = TypeVar("T")

_TRANSIENT = (LedgerError, OSError, TrackingConflict)
_MORE_S = 0.05  # how long fetch_soon waits for more once it has a first message
_RESUBSCRIBE_AFTER = 15  # empty fetches (of a second each) before subscribing afresh
_REPLY_S = 5.0  # the longest an acknowledgement (or nak, or in-progress) is waited on


@dataclass
class WorkerStats:
    """What a worker did since it started."""

    messages: int = 0
    acked: int = 0
    handed_back: int = 0
    deferred: int = 0
    catch_ups: int = 0
    stored: int = 0
    alerts: int = 0
    sweeps: int = 0
    delivered: int = 0  # reactions delivered (T3)
    redelivered: int = 0  # delivery attempts made again after one cut without an outcome
    errors: int = 0
    last_error: str = ""
    batches: int = 0  # their durations go to the metrics' histogram, not kept here

    def as_dict(self) -> dict[str, Any]:
        """Return the counts."""
        return dict(self.__dict__)


class TierWorker:
    """One process's share of a tier of a job, driven by JetStream."""

    def __init__(
        self,
        job: Job,
        job_text: str,
        ledger: Ledger,
        bus: Bus,
        tier: str,
        *,
        batch_size: int | None = None,
        fetch: int = 64,
        alerts_fetch: int = 500,
        ack_wait_s: float = 30.0,
        max_ack_pending: int = 1024,
        sweep_s: float = 5.0,
        nak_delay_s: float = 0.2,
        alerts_subject: str | None = None,
        wait_for_relay_s: float = 60.0,
        metrics: LiveMetrics | None = None,
        stuck_after_s: float | None = 900.0,
        heartbeat_s: float = 30.0,
    ) -> None:
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}: one of {', '.join(TIERS)}")
        self.job = job
        self.job_text = job_text
        self.ledger = ledger
        self.bus = bus
        self.tier = tier
        self.fetch = fetch
        self.alerts_fetch = alerts_fetch
        self.ack_wait_s = ack_wait_s
        self.max_ack_pending = max_ack_pending
        self.sweep_s = sweep_s
        self.nak_delay_s = nak_delay_s
        self.alerts_subject = alerts_subject or bus.alerts_subject
        self.wait_for_relay_s = wait_for_relay_s
        self.stuck_after_s = stuck_after_s or None
        self.heartbeat_s = heartbeat_s
        self.run_id = uuid.uuid4().hex
        self.units = JobUnits(job, sources=[])
        # A T2 retry is a delayed redelivery, not a sleep: the consumer goes on meanwhile.
        self.tiers = build_tiers(self.units, ledger, self.run_id, {}, None, batch_size, defer=True)
        self.projectors: list[Projector] = self.tiers.of(tier)
        # What every tier consumes: an upstream tier with nothing to read is not waited for.
        self.topics: Topics = {p.name: p.topics for t in TIERS for p in self.tiers.of(t)}
        self._subs: list[JetStreamContext.PullSubscription] = []
        self._idle: dict[str, int] = {}  # consecutive empty fetches, by subscription
        self.batch_size = batch_size
        self.shards = 1
        self.stats = WorkerStats()
        self.metrics = metrics or LiveMetrics(tier)
        self._failures_seen = 0
        self._deliveries_seen: dict[str, int] = {}  # outbox counts put in the metrics
        self._deferred: dict[str, float] = {}  # tracking name -> wait before its retry
        self._kept: set[str] = set()  # claims held until the process ends (T0's decisions)
        self._lag_at = 0.0
        self.claims = ledger.claims()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"skyledger-{tier}")
        self._consumers: dict[str, list[int]] = {}  # event type name -> projector indexes
        for i, projector in enumerate(self.projectors):
            types = [topic_of(t).rpartition(":")[2] for t in projector.topics] or [">"]
            for name in types:
                self._consumers.setdefault(name, []).append(i)
        self.ingest: Ingest | None = None
        self._started_id = ""

    # -- names -----------------------------------------------------------------------

    @property
    def durable(self) -> str:
        """Return the durable consumer name this tier of this job shares."""
        return f"{self.bus.prefix}_{self.tier}_{self.job.hash[:16]}"

    def _filters(self) -> list[str]:
        if ">" in self._consumers:
            return [f"{self.bus.prefix}.events.>"]
        return sorted(self.bus.event_filter(name) for name in self._consumers)

    # -- running ---------------------------------------------------------------------

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, fn, *args)

    async def _until_done(self, stop: asyncio.Event, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn`` on the worker's thread until it does not fail for a transient
        reason (a database restarting as the worker starts), or until ``stop``."""
        return await until_done(lambda: self._blocking(fn, *args), stop, _TRANSIENT, self._error)

    async def run(self, stop: asyncio.Event) -> WorkerStats:
        """Work until ``stop`` is set: finish the batch in hand, acknowledge, return."""
        started = run_started(self.job, self.job_text, self.units, self.run_id)
        self._started_id = started.id
        await self._until_done(stop, self.ledger.append, [started])
        await self._until_done(stop, register_configs, self.ledger, self.units.all(), self.run_id)
        if self.tier == "t0":
            self.ingest = Ingest(
                self.ledger, self.units.shapers, self.units.filters, self.run_id,
                self.tiers.decide.verdicts, (started.id,), self.batch_size or 5000,
            )  # fmt: skip
        reconnected, alerts_reconnected = asyncio.Event(), asyncio.Event()

        async def on_reconnect() -> None:
            log.warning("%s worker: reconnected to NATS; subscribing again", self.tier)
            reconnected.set()
            alerts_reconnected.set()

        beats = self.ledger, self.run_id, self.heartbeat_s, stop, _TRANSIENT
        beating = asyncio.ensure_future(heartbeat.beating(*beats))
        try:
            client = await connect(self.bus.url, f"skyledger {self.tier} worker", on_reconnect)
        except BaseException:
            beating.cancel()
            raise
        status, error = "ok", ""
        try:
            js = client.jetstream()
            self.shards = await self.bus.shard_count(js, wait_s=self.wait_for_relay_s)
            if self.tier == "t0":
                await self.bus.ensure_alerts_stream(js)
            loops = [self._events_loop(js, stop, reconnected)]
            if self.tier == "t0":
                loops.append(self._alerts_loop(js, stop, alerts_reconnected))
                streams = [s for s in self.units.sources if isinstance(s, StreamSource)]
                loops += [self._stream_loop(source, stop) for source in streams]
            running = [asyncio.ensure_future(one) for one in loops]
            try:
                await asyncio.gather(*running)
            finally:  # one loop failed or all were stopped: every loop (and the threads
                stop.set()  # reading stream sources) ends before the claims and the
                await asyncio.gather(*running, return_exceptions=True)  # ledger close
        except BaseException as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            summary = {"tier": self.tier, "shards": self.shards, "error": error}
            summary |= self.stats.as_dict()
            finished = RunFinished(
                stream=f"run:{self.run_id}", run=self.run_id, status=status, summary=summary,
                run_id=self.run_id,
            )  # fmt: skip
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beating
            try:
                await self._blocking(self.ledger.append, [finished])
            except _TRANSIENT as exc:
                log.warning("could not record the end of worker %s: %s", self.run_id, exc)
            self.claims.close()
            self._thread.shutdown(wait=True)
            for sub in self._subs:  # else drain() waits on their queues (nats.py 2.16)
                with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                    await asyncio.wait_for(sub.unsubscribe(), 2)
            try:
                await asyncio.wait_for(client.drain(), 10)
            except (TimeoutError, nats.errors.Error):
                await client.close()
        return self.stats

    async def _subscribe(
        self,
        js: JetStreamContext,
        stream: str,
        durable: str,
        filters: Sequence[str],
        max_ack_pending: int,
    ) -> JetStreamContext.PullSubscription:
        """Bind to the durable consumer, creating it if it does not exist."""
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=max_ack_pending,
            filter_subjects=list(filters) if len(filters) > 1 else None,
            filter_subject=filters[0] if len(filters) == 1 else None,
        )
        try:
            await js.consumer_info(stream, durable)
        except NotFoundError:
            await js.add_consumer(stream, config)
        sub = await js.pull_subscribe_bind(durable, stream)
        self._subs.append(sub)
        return sub

    async def _fetch(
        self,
        js: JetStreamContext,
        subs: dict[str, JetStreamContext.PullSubscription],
        key: str,
        make: Callable[[], Any],
        batch: int,
        reconnected: asyncio.Event,
    ) -> list[Msg]:
        """Fetch up to ``batch`` messages (none after a second without); rebuild the
        subscription after a reconnect (pull subscriptions do not survive a server
        restart, nats.py #504)."""
        idle = self._idle.get(key, 0)
        if key not in subs or reconnected.is_set() or idle >= _RESUBSCRIBE_AFTER:
            # Also now and then while idle: a pull subscription can go quiet without an
            # error (a server that restarted, a network that came back), and a new one
            # costs one request.
            reconnected.clear()
            old = subs.pop(key, None)
            if old is not None:
                with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                    await asyncio.wait_for(old.unsubscribe(), 2)
            try:
                subs[key] = await make()
            except (TimeoutError, nats.errors.Error, NotFoundError) as exc:
                log.warning("%s: cannot subscribe yet (%r); trying again", key, exc)
                await asyncio.sleep(1.0)
                return []
            self._idle[key] = 0
        try:
            msgs: list[Msg] = await fetch_soon(subs[key], batch, timeout=1.0)
        except (TimeoutError, nats.errors.TimeoutError):
            self._idle[key] = self._idle.get(key, 0) + 1
            return []
        except (nats.errors.Error, NotFoundError) as exc:
            log.warning("%s: fetch failed (%r); subscribing again", key, exc)
            subs.pop(key, None)
            await asyncio.sleep(0.5)
            return []
        self._idle[key] = 0
        return msgs

    async def _events_loop(
        self, js: JetStreamContext, stop: asyncio.Event, reconnected: asyncio.Event
    ) -> None:
        subs: dict[str, JetStreamContext.PullSubscription] = {}
        filters = self._filters()

        async def make() -> JetStreamContext.PullSubscription:
            return await self._subscribe(
                js, self.bus.events_stream, self.durable, filters, self.max_ack_pending
            )

        await self._sweep()
        last = time.monotonic()
        while not stop.is_set():
            self.metrics.beat()
            msgs = await self._fetch(js, subs, "events", make, self.fetch, reconnected)
            if not msgs:
                if time.monotonic() - last >= self.sweep_s:
                    await self._sweep()
                    last = time.monotonic()
                continue
            self.stats.messages += len(msgs)
            await self._handle(msgs)
            last = time.monotonic()

    async def _alerts_loop(
        self, js: JetStreamContext, stop: asyncio.Event, reconnected: asyncio.Event
    ) -> None:
        """Ingest the alerts stream in order, from where the ledger says T0 got to.

        The position in the stream (its sequence number) is kept in the ledger with the
        events of each batch, as for a file source: one T0 process ingests a subject
        at a time (a claim; others stand by and take over when it dies), reading from
        its recorded position on a consumer of its own, so packets are appended in the
        order they were published, once, whatever was killed when. Messages are then
        acknowledged on that consumer (the position in the ledger is what counts).
        """
        assert self.ingest is not None
        subject = self.alerts_subject
        name = stream_position_name(self.ingest, self.bus, subject)
        sub: JetStreamContext.PullSubscription | None = None
        after = -1
        while not stop.is_set():
            self.metrics.beat()
            try:
                claimed = await self._blocking(self.claims.claim, name)
                if not claimed:
                    sub, after = None, -1
                    await asyncio.sleep(1.0)  # another T0 process ingests this subject
                    continue
                if sub is None or reconnected.is_set():
                    reconnected.clear()
                    after = await self._blocking(self.ledger.tracked, name)
                    sub = await self._stream_from(js, subject, after + 1)
                try:
                    msgs = await fetch_soon(sub, self.alerts_fetch, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                msgs = [m for m in msgs if _seq(m) > after]
                if not msgs:
                    continue
                started = time.perf_counter()
                await self._with_progress(msgs, self._blocking(self._ingest, msgs, name, after))
                after = _seq(msgs[-1])
                for msg in msgs:
                    await _ack(msg)
                self.stats.alerts += len(msgs)
                self.metrics.alerts.inc(len(msgs))
                self.stats.batches += 1
                self.metrics.batch.observe(time.perf_counter() - started)
            except (*_TRANSIENT, nats.errors.Error, NotFoundError) as exc:
                self._error(exc)
                sub, after = None, -1  # read the position again, subscribe again
                await asyncio.sleep(1.0)

    async def _stream_loop(self, source: StreamSource, stop: asyncio.Event) -> None:
        """Ingest a stream source of the job (Kafka) until ``stop``, on a thread of its
        own: each poll's messages are appended with the partitions' positions, decided
        (on the worker's thread, which holds the claims) and committed to the broker
        before the next. T0 processes of a job share the source's consumer group, so
        they split its partitions; one that dies hands its partitions on, and they are
        read on from the ledger's positions."""
        loop = asyncio.get_running_loop()
        halt = threading.Event()
        ingest = Ingest(
            self.ledger, self.units.shapers, self.units.filters, self.run_id,
            self.tiers.decide.verdicts, (self._started_id,), self.batch_size or 5000,
        )  # fmt: skip

        def decide() -> None:
            work = self._blocking(self._decide, ingest.stats.stocks)
            asyncio.run_coroutine_threadsafe(work, loop).result()

        def read(n: int) -> None:
            self.stats.alerts += n
            self.metrics.alerts.inc(n)
            self.metrics.beat()

        def work() -> None:
            while not halt.is_set():
                try:
                    ingest.run_stream(source, source.label(), decide, read, to_end=False,
                                      stop=halt.is_set)  # fmt: skip
                except Exception as exc:  # the broker or the ledger away: try again
                    self._error(exc)
                    halt.wait(1.0)

        done = loop.run_in_executor(None, work)
        try:
            await stop.wait()
        finally:
            halt.set()
            await done

    async def _stream_from(
        self, js: JetStreamContext, subject: str, start: int
    ) -> JetStreamContext.PullSubscription:
        """Return a consumer of the alerts stream's subject from sequence ``start`` on."""
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(start, 1),
            ack_wait=self.ack_wait_s,
            max_ack_pending=self.alerts_fetch,
            inactive_threshold=60.0,
        )
        sub = await js.pull_subscribe(subject, stream=self.bus.alerts_stream, config=config)
        self._subs.append(sub)
        return sub

    def _ingest(self, msgs: Sequence[Msg], name: str, after: int) -> None:
        """Append the packets of some messages with the stream position of the last,
        then decide on their alerts."""
        assert self.ingest is not None
        blobs = [Blob(msg.data, f"nats:{msg.subject}#{_seq(msg)}") for msg in msgs]
        positions = [_seq(msg) for msg in msgs]
        self.ingest.take(blobs, f"nats:{self.alerts_subject}", positions, name, after)
        self._decide(self.ingest.stats.stocks)

    def _decide(self, stocks: set[str]) -> None:
        """Decide on the alerts of ``stocks`` just appended (and forget the stocks)."""
        shards: list[Shard | None] = [None]
        if self.shards > 1:
            touched = sorted({shard_of(stock, self.shards) for stock in stocks})
            shards = [Shard(i, self.shards) for i in touched]
        stocks.clear()
        decide = self.tiers.decide
        if shards == [None]:
            self._drive(decide, None, passes=1)
            return
        # The touched shards' decisions in one read and one append. Their claims are kept
        # while this process lives (only T0 decides), so a batch costs no lock round trips.
        # One pass: the decisions land after the positions, but T1's bound counts an
        # upstream with nothing of its own left to read as at the head.
        held = [s for s in shards if s is not None and self._keep(tracking_of(decide, s))]
        done = catch_up_shards(self.ledger, decide, held)
        self.stats.catch_ups += 1
        self.stats.stored += done.stored
        self.metrics.events.inc(done.read)
        self.metrics.appended.inc(done.stored)

    def _keep(self, name: str) -> bool:
        """Claim a name for as long as this process lives; return whether it holds it
        (a claim held costs no round trip; one lost with its connection is made again)."""
        if not self.claims.claim(name):
            return False
        self._kept.add(name)
        return True

    # -- the work --------------------------------------------------------------------

    async def _with_progress(self, msgs: Sequence[Msg], work: Any) -> Any:
        """Await ``work``, telling JetStream every third of ``ack_wait`` that these
        messages are still being worked on, for up to ``stuck_after_s``.

        Past that the work is taken to be stuck (a call that never returns): the worker
        writes every thread's stack to its log, /healthz says so, and the messages are
        no longer kept, so JetStream gives them to another worker after ``ack_wait``.
        If the work ends after all, the worker goes on as before."""
        task = asyncio.ensure_future(work)
        started = time.monotonic()
        stuck_at = math.inf if self.stuck_after_s is None else started + self.stuck_after_s
        stuck = False
        try:
            while True:
                wait = self.ack_wait_s / 3
                if not stuck:  # wake when it would become stuck, to say so then
                    wait = min(wait, max(stuck_at - time.monotonic(), 0.05))
                done, _ = await asyncio.wait({task}, timeout=wait)
                if done:
                    return task.result()
                if not stuck and time.monotonic() >= stuck_at:
                    stuck = True
                    self._stuck(time.monotonic() - started)
                if stuck:
                    continue
                self.metrics.beat()  # long work is still progress (for /healthz)
                for msg in msgs:
                    await _reply(msg.in_progress())
        finally:
            if stuck:
                took = time.monotonic() - started
                log.warning("%s worker: the batch taken for stuck ended after %.0f s",
                            self.tier, took)  # fmt: skip
                self.metrics.unstuck()

    def _stuck(self, took: float) -> None:
        """Report a batch that has run for ``took`` seconds, past ``stuck_after_s``."""
        why = f"one batch has run for {took:.0f} s (more than --stuck-after)"
        log.error("%s worker: %s; every thread's stack follows; its messages are left "
                  "to other workers", self.tier, why)  # fmt: skip
        with contextlib.suppress(OSError, ValueError):  # no stderr to write to
            sys.stderr.flush()
            faulthandler.dump_traceback(sys.stderr, all_threads=True)
        self.metrics.stuck(why)

    def _drive(self, projector: Projector, shard: Shard | None, passes: int = 8) -> bool:
        """Catch a projector up in a shard (or everywhere, for a whole-pass one) if this
        process can claim it, until its position passes its own output (at most
        ``passes`` catch-ups); return whether it was claimed."""
        name = tracking_of(projector, shard)
        if not self.claims.claim(name):
            return False
        self._deferred.pop(name, None)
        try:
            for _ in range(passes):
                done = catch_up(
                    self.ledger, projector, shard=shard, shards=self.shards, topics=self.topics
                )
                self.stats.catch_ups += 1
                self.stats.stored += done.stored
                self.metrics.events.inc(done.read)
                self.metrics.appended.inc(done.stored)
                if done.deferred_s is not None:  # a retry not yet due: come back then
                    self._deferred[name] = done.deferred_s
                    break
                if done.stored == 0:
                    break
        finally:
            if name not in self._kept:
                self.claims.release(name)
        return True

    def _shards_of(self, projector: Projector) -> list[Shard | None]:
        if projector.whole_pass or self.shards <= 1:
            return [None]
        return list(Shard.all(self.shards))

    def _work(
        self, wanted: Sequence[tuple[int, Shard | None]]
    ) -> tuple[dict[str, int], dict[str, float]]:
        """Drive each (projector, shard) given, in tier order; return the positions, and
        the waits of those that put work off until a retry is due."""
        for i, shard in wanted:
            self._drive(self.projectors[i], shard)
        failures = self._unit_failures()
        self.metrics.unit_failures.inc(failures - self._failures_seen)
        self._failures_seen = failures
        self._count_deliveries()
        if time.monotonic() - self._lag_at >= 5.0:
            self._lag_at = time.monotonic()
            self.metrics.lag.set(self._lag())
        names = [tracking_of(self.projectors[i], shard) for i, shard in wanted]
        deferred = {n: self._deferred[n] for n in names if n in self._deferred}
        return {n: self.ledger.tracked(n) for n in names}, deferred

    def _unit_failures(self) -> int:
        """Return how many units this worker's projectors gave up on so far."""
        found = 0
        for projector in self.projectors:
            found += len(getattr(projector, "failures", ()))
        return found

    def _count_deliveries(self) -> None:
        """Bring the delivery counts (stats, metrics) up to the outboxes' (T3)."""
        for outcome in ("delivered", "failed", "redelivered"):
            total = sum(d.counts[outcome] for d in self.tiers.deliver)
            seen = self._deliveries_seen.get(outcome, 0)
            if total > seen:
                self.metrics.deliveries[outcome].inc(total - seen)
                self._deliveries_seen[outcome] = total
        self.stats.delivered = self._deliveries_seen.get("delivered", 0)
        self.stats.redelivered = self._deliveries_seen.get("redelivered", 0)

    def _lag(self) -> int:
        """Return the ledger's head minus this tier's slowest position."""
        head = self.ledger.head()
        names = [
            tracking_of(p, s) for p in self.projectors for s in self._shards_of(p)
        ]  # fmt: skip
        return head - min((self.ledger.tracked(n) for n in names), default=head)

    def _placement(self, index: int, shard: int) -> Shard | None:
        projector = self.projectors[index]
        if projector.whole_pass or self.shards <= 1:
            return None
        return Shard(shard, self.shards)

    async def _handle(self, msgs: Sequence[Msg]) -> None:
        """Work on what the messages announce, then acknowledge those now passed."""
        started = time.perf_counter()
        needs: list[list[tuple[int, Shard | None, int]]] = []
        wanted: dict[tuple[int, Shard | None], None] = {}
        for msg in msgs:
            shard, type_name = self.bus.parse_event_subject(msg.subject)
            position = int(orjson.loads(msg.data)["position"])
            indexes = self._consumers.get(type_name, []) + self._consumers.get(">", [])
            need = [(i, self._placement(i, shard), position) for i in indexes]
            needs.append(need)
            for i, placed, _ in need:
                wanted[(i, placed)] = None
        order = sorted(wanted, key=lambda k: (k[0], -1 if k[1] is None else k[1].index))
        try:
            reached, deferred = await self._with_progress(msgs, self._blocking(self._work, order))
        except _TRANSIENT as exc:
            self._error(exc)
            for msg in msgs:
                await _nak(msg, 1.0)
            self.stats.handed_back += len(msgs)
            return
        for msg, need in zip(msgs, needs, strict=True):
            names = [(tracking_of(self.projectors[i], p), at) for i, p, at in need]
            waits = [deferred[n] for n, _ in names if n in deferred]
            if all(reached.get(n, 0) >= at for n, at in names):
                await _ack(msg)
                self.stats.acked += 1
                self.metrics.acked.inc()
            elif waits:  # a delayed redelivery for when the retry is due, not a sleep
                await _nak(msg, max(self.nak_delay_s, max(waits)))
                self.stats.deferred += 1
                self.metrics.deferred.inc()
            else:
                await _nak(msg, self.nak_delay_s)
                self.stats.handed_back += 1
                self.metrics.handed_back.inc()
        self.stats.batches += 1
        self.metrics.batch.observe(time.perf_counter() - started)

    async def _sweep(self) -> None:
        """Catch every projector up in every shard this process can claim."""
        order = [(i, s) for i, p in enumerate(self.projectors) for s in self._shards_of(p)]
        try:
            await self._with_progress((), self._blocking(self._work, order))
            self.stats.sweeps += 1
        except _TRANSIENT as exc:
            self._error(exc)

    def _error(self, exc: BaseException) -> None:
        if isinstance(exc, LedgerError):
            with contextlib.suppress(Exception):  # dead pooled connections: new ones
                self.ledger.reconnect()
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        self.metrics.transient.inc()
        self.metrics.problem = self.stats.last_error
        log.warning("%s worker: %s (will retry)", self.tier, self.stats.last_error)


async def fetch_soon(
    sub: JetStreamContext.PullSubscription, batch: int, timeout: float
) -> list[Msg]:
    """Return up to ``batch`` messages as soon as there are some, waiting at most
    ``timeout`` for the first (raising TimeoutError if none came).

    nats-py's ``fetch(batch)`` returns at once what is there, but once it has had to
    wait for a first message it waits for a whole batch or the timeout: at a steady
    trickle of alerts that is the timeout on every batch. So: wait for one, then take
    what else is there without waiting for more."""
    msgs: list[Msg] = await sub.fetch(1, timeout=timeout)
    if batch > 1:
        with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
            msgs += await sub.fetch(batch - 1, timeout=_MORE_S)
    return msgs


async def _ack(msg: Msg) -> None:
    """Acknowledge; if the connection is down, the message comes again and is passed."""
    await _reply(msg.ack())


async def _nak(msg: Msg, delay: float) -> None:
    """Hand a message back for later; if the connection is down, it comes back anyway."""
    await _reply(msg.nak(delay=delay))


async def _reply(reply: Awaitable[None]) -> None:
    """Send an acknowledgement (or a nak, or an in-progress) for at most ``_REPLY_S``:
    one lost is only a redelivery, one waited on forever (a client whose buffers never
    drain while a network is cut) would stop the loop that sent it."""
    with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
        await asyncio.wait_for(reply, _REPLY_S)


def _seq(msg: Msg) -> int:
    """Return a JetStream message's sequence number in its stream."""
    return int(msg.metadata.sequence.stream) if msg.metadata.sequence else 0


def stream_position_name(ingest: Ingest, bus: Bus, subject: str | None = None) -> str:
    """Return the name of T0's position in the alerts stream's subject (ledger tracking)."""
    return ingest.stream_tracking_name(f"nats:{bus.alerts_stream}:{subject or bus.alerts_subject}")
