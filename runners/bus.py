"""NATS JetStream as skyledger's bus: what goes on it, under which names, and how to
connect so that a restarted server is survived.

Two streams, named after a prefix (``skyledger`` by default):

- ``SKYLEDGER_EVENTS`` carries notifications that the relay publishes as the ledger
  grows, on ``skyledger.events.SHARD.TYPE`` (``TYPE`` an event type's name such as
  ``StateCombined``, ``SHARD`` the shard of its stream): the payload is the position of
  the last such event in a batch. The ledger is the truth and the bus only wakes: a
  worker reads the events themselves from the ledger. The number of shards is part of
  the stream (its metadata), so every relay and worker agrees on it.
- ``SKYLEDGER_ALERTS`` carries alert packets, one per message, on ``skyledger.alerts``
  and ``skyledger.alerts.>`` (what ``skyledger simulate --to nats://...`` publishes and
  the T0 workers ingest).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from skyledger.ledger import RunnerError

__all__ = ["DEFAULT_SHARDS", "Bus", "connect"]

DEFAULT_SHARDS = 16


@dataclass(frozen=True)
class Bus:
    """Where skyledger's messages go on one NATS server (or cluster)."""

    url: str
    prefix: str = "skyledger"
    shards: int = DEFAULT_SHARDS
    events_max_age_s: float = 24 * 3600  # notifications are wakes: the ledger keeps the facts
    alerts_max_age_s: float = 7 * 24 * 3600

    @property
    def events_stream(self) -> str:
        """Return the name of the notifications stream."""
        return f"{self.prefix.upper()}_EVENTS"

    @property
    def alerts_stream(self) -> str:
        """Return the name of the alert packets stream."""
        return f"{self.prefix.upper()}_ALERTS"

    @property
    def alerts_subject(self) -> str:
        """Return the subject alert packets are published on by default."""
        return f"{self.prefix}.alerts"

    def event_subject(self, shard: int, type_name: str) -> str:
        """Return the subject of notifications of one event type in one shard."""
        return f"{self.prefix}.events.{shard}.{type_name}"

    def event_filter(self, type_name: str) -> str:
        """Return the subject filter of one event type's notifications, in every shard."""
        return f"{self.prefix}.events.*.{type_name}"

    def parse_event_subject(self, subject: str) -> tuple[int, str]:
        """Return (shard, event type name) of a notification's subject."""
        _, _, shard, type_name = subject.rsplit(".", 3)
        return int(shard), type_name

    async def ensure_events_stream(self, js: JetStreamContext) -> int:
        """Create the notifications stream if missing (the relay does); return its number
        of shards: an existing stream's count wins over this bus's."""
        config = StreamConfig(
            name=self.events_stream,
            subjects=[f"{self.prefix}.events.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=self.events_max_age_s,
            duplicate_window=120.0,
            metadata={"skyledger_shards": str(self.shards)},
            description="skyledger: positions of new ledger events, by shard and type",
        )
        try:
            await js.stream_info(self.events_stream)
        except NotFoundError:
            await js.add_stream(config)
        return await self.shard_count(js)

    async def ensure_alerts_stream(self, js: JetStreamContext) -> None:
        """Create the alert packets stream if missing (publishers and T0 workers do)."""
        config = StreamConfig(
            name=self.alerts_stream,
            subjects=[self.alerts_subject, f"{self.alerts_subject}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=self.alerts_max_age_s,
            duplicate_window=120.0,
            description="skyledger: alert packets for T0, one per message",
        )
        try:
            await js.stream_info(self.alerts_stream)
        except NotFoundError:
            await js.add_stream(config)

    async def shard_count(self, js: JetStreamContext, wait_s: float = 0.0) -> int:
        """Return the number of shards of the notifications stream, waiting up to
        ``wait_s`` for a relay to make it."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            try:
                info = await js.stream_info(self.events_stream)
                break
            except NotFoundError as exc:
                if asyncio.get_running_loop().time() >= deadline:
                    msg = f"no stream {self.events_stream} on {self.url}: start the relay"
                    raise RunnerError(msg) from exc
                await asyncio.sleep(0.2)
        metadata: dict[str, Any] = dict(info.config.metadata or {})
        return int(metadata.get("skyledger_shards", self.shards))


async def connect(
    url: str,
    name: str,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    timeout_s: float = 30.0,
) -> Client:
    """Connect to NATS, retrying until ``timeout_s``; once connected, reconnect forever
    (a restarted server is waited for, never given up on), calling ``on_reconnect``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            options: dict[str, Any] = {}
            if on_reconnect is not None:
                options["reconnected_cb"] = on_reconnect
            client: Client = await nats.connect(
                [u.strip() for u in url.split(",") if u.strip()],  # a cluster: several URLs
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                ping_interval=5,  # a server gone silent (a cut network) is noticed in ~15 s
                max_outstanding_pings=3,
                connect_timeout=2,
                allow_reconnect=True,
                **options,
            )
            return client
        except (TimeoutError, OSError, nats.errors.NoServersError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise RunnerError(f"cannot reach NATS at {url}: {exc}") from exc
            await asyncio.sleep(0.5)
