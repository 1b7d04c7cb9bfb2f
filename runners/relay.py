"""The relay: follows the ledger and publishes where it grew to NATS JetStream.

For each batch of new events (up to ``batch`` at a time, woken by PostgreSQL's
LISTEN/NOTIFY, with a timeout as a safety net in case a notification is lost), the relay
publishes one message per shard and event type that the batch holds: the position of
the last such event. The message id (``Nats-Msg-Id``) is made of the shard, the type
and that position, so a relay restarted before it recorded its position publishes the
same messages again and JetStream drops them as duplicates. Its position is kept in the
ledger's tracking table (``relay:PREFIX``) and moves only after JetStream acknowledged
every message of the batch: nothing is skipped, whatever crashes when.

Two relays on one ledger are allowed (one takes over when the other dies): the
tracking position detects the overlap, and the one that lost the race reads where the
other got to and goes on from there.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import nats.errors
import orjson
from nats.js import JetStreamContext

from skyledger.ledger import Ledger, LedgerError, Tracking, TrackingConflict, shard_of
from skyledger.runners.bus import Bus, connect
from skyledger.runners.metrics import LiveMetrics
from skyledger.runners.retrying import until_done

__all__ = ["Relay", "RelayStats"]

log = logging.getLogger("skyledger.relay")


@dataclass
class RelayStats:
    """What a relay did: batches, events followed, messages published, position."""

    batches: int = 0
    events: int = 0
    published: int = 0
    position: int = 0
    conflicts: int = 0
    errors: int = 0


class Relay:
    """Follows a ledger and publishes notifications of its new events to JetStream."""

    def __init__(
        self,
        ledger: Ledger,
        bus: Bus,
        *,
        batch: int = 5000,
        wait_s: float = 1.0,
        metrics: LiveMetrics | None = None,
    ) -> None:
        self.ledger = ledger
        self.bus = bus
        self.batch = batch
        self.wait_s = wait_s
        self.name = f"relay:{bus.prefix}"
        self.stats = RelayStats()
        self.metrics = metrics or LiveMetrics("relay")

    def _retrying(self, exc: BaseException) -> None:
        """Count and log a database error to retry after, with fresh connections."""
        self.stats.errors += 1
        self.metrics.transient.inc()
        log.warning("relay: %s (will retry)", exc)
        self.ledger.reconnect()

    async def run(self, stop: asyncio.Event, *, until: int | None = None) -> RelayStats:
        """Relay until ``stop`` is set (or, for tests and benchmarks, until the position
        ``until`` is published)."""
        client = await connect(self.bus.url, f"skyledger relay {self.bus.prefix}")
        waiter = self.ledger.waiter()
        try:
            js = client.jetstream()
            shards = await self.bus.ensure_events_stream(js)
            # The database may be restarting as the relay starts: wait for it.
            after = await until_done(
                lambda: asyncio.to_thread(self.ledger.tracked, self.name),
                stop, (LedgerError,), self._retrying,
            )  # fmt: skip
            self.stats.position = after
            while not stop.is_set() and (until is None or after < until):
                self.metrics.beat()
                try:
                    marks = await asyncio.to_thread(self.ledger.marks, after, self.batch)
                except LedgerError as exc:  # the database restarts: wait for it
                    self._retrying(exc)
                    await asyncio.sleep(1.0)
                    continue
                if not marks:
                    self.metrics.lag.set(0)
                    await asyncio.to_thread(waiter.wait, self.wait_s)
                    continue
                latest: dict[tuple[int, str], int] = {}
                for position, type_name, stream in marks:
                    latest[(shard_of(stream, shards), type_name)] = position
                try:
                    published = await self._publish(js, latest)
                except (TimeoutError, nats.errors.Error) as exc:  # NATS restarts
                    self.stats.errors += 1
                    self.metrics.transient.inc()
                    log.warning("relay: publishing failed: %r (will retry)", exc)
                    await asyncio.sleep(0.5)
                    continue  # the same batch again: JetStream drops what it had
                end = marks[-1][0]
                try:
                    await asyncio.to_thread(
                        self.ledger.append, [], (), Tracking(self.name, after, end)
                    )
                except TrackingConflict:
                    self.stats.conflicts += 1
                    after = await asyncio.to_thread(self.ledger.tracked, self.name)
                    log.warning("another relay moved %s; going on from %d", self.name, after)
                    continue
                except LedgerError as exc:
                    self._retrying(exc)
                    await asyncio.sleep(1.0)
                    continue
                after = end
                self.stats.batches += 1
                self.stats.events += len(marks)
                self.stats.published += published
                self.metrics.events.inc(len(marks))
                self.metrics.acked.inc(published)  # messages JetStream acknowledged
                behind = len(marks) == self.batch  # more waiting after this batch
                self.metrics.lag.set(self.ledger.head() - end if behind else 0)
                self.stats.position = after
        finally:
            waiter.close()
            try:
                await asyncio.wait_for(client.drain(), 10)
            except (TimeoutError, nats.errors.Error):
                await client.close()
        return self.stats

    async def _publish(self, js: JetStreamContext, latest: dict[tuple[int, str], int]) -> int:
        """Publish one message per (shard, type) and wait for JetStream's acks."""
        acks = []
        for (shard, type_name), position in sorted(latest.items()):
            acks.append(
                await js.publish_async(
                    self.bus.event_subject(shard, type_name),
                    orjson.dumps({"position": position}),
                    headers={"Nats-Msg-Id": f"{shard}.{type_name}.{position}"},
                )
            )
        await asyncio.wait_for(asyncio.gather(*acks), 30)
        return len(acks)
