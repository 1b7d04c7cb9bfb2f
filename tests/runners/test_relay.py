"""The relay publishes where the ledger grew, per shard and event type, to a real NATS
JetStream; a relay that died before recording its position publishes the same messages
again, and JetStream drops them as duplicates."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import orjson
import pytest
from nats.js.api import ConsumerConfig

from skyledger.ledger import DatapointAdded, FilterDecided, Ledger, Provenance, Tracking, shard_of
from skyledger.runners.bus import Bus, connect
from skyledger.runners.embedded import EmbeddedNats
from skyledger.runners.relay import Relay

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

_prefixes = itertools.count()


@pytest.fixture
def bus(nats_server: EmbeddedNats, worker_id: str) -> Bus:
    """Return a bus of its own on the session's NATS server (streams named after it)."""
    return Bus(nats_server.url, prefix=f"t{worker_id}r{next(_prefixes)}", shards=4)


@pytest.fixture
def ledger(pg_url: str) -> Iterator[Ledger]:
    with Ledger.open(pg_url) as opened:
        yield opened


def facts(n: int, start: int = 0) -> list[DatapointAdded | FilterDecided]:
    """Return datapoints and decisions of several stocks (streams)."""
    found: list[DatapointAdded | FilterDecided] = []
    prov = Provenance(unit="F", unit_version="1", unit_digest="d", config="c")
    for i in range(start, start + n):
        stock = f"ZTF{i % 7}"
        found.append(DatapointAdded(stream=stock, datapoint_id=f"d{i}", kind="detection",
                                    body={"i": i}))  # fmt: skip
        if i % 3 == 0:
            decided = FilterDecided(
                stream=stock, channel="C", alert_digest=f"a{i}", alert=f"{i:032x}",
                accepted=True, provenance=prov,
            )  # fmt: skip
            found.append(decided)
    return found


def published(bus: Bus) -> list[tuple[str, int]]:
    """Return every message of the events stream: (subject, position), in stream order."""

    async def read() -> list[tuple[str, int]]:
        client = await connect(bus.url, "test reader")
        js = client.jetstream()
        sub = await js.pull_subscribe(
            f"{bus.prefix}.events.>", stream=bus.events_stream,
            config=ConsumerConfig(inactive_threshold=5),
        )  # fmt: skip
        found = []
        while True:
            try:
                msgs = await sub.fetch(500, timeout=0.5)
            except TimeoutError:
                break
            for msg in msgs:
                found.append((msg.subject, orjson.loads(msg.data)["position"]))
                await msg.ack()
        await client.close()
        return found

    return asyncio.run(read())


def relay_to_head(ledger: Ledger, bus: Bus, batch: int = 5) -> Relay:
    relay = Relay(ledger, bus, batch=batch, wait_s=0.1)
    asyncio.run(relay.run(asyncio.Event(), until=ledger.head()))
    return relay


def test_every_event_is_covered_by_a_notification_of_its_shard_and_type(
    ledger: Ledger, bus: Bus
) -> None:
    ledger.append(facts(40))
    relay = relay_to_head(ledger, bus)
    assert relay.stats.position == ledger.head() == ledger.tracked(relay.name)
    messages = published(bus)
    assert len(messages) == relay.stats.published
    latest: dict[str, int] = {}
    for subject, position in messages:
        latest[subject] = max(latest.get(subject, 0), position)
    for event in ledger.read():
        subject = bus.event_subject(shard_of(event.stream, 4), type(event).__name__)
        assert latest[subject] >= (event.position or 0)  # woken at or after it
    assert {bus.parse_event_subject(s)[1] for s, _ in messages} == {
        "DatapointAdded",
        "FilterDecided",
    }


def test_a_relay_that_died_before_recording_publishes_nothing_twice(
    ledger: Ledger, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.append(facts(30))
    relay_to_head(ledger, bus)
    before = published(bus)
    ledger.append(facts(12, start=30))
    real_append = Ledger.append

    def die_on_tracking(self: Ledger, events: object, packets: object = (),
                        tracking: Tracking | None = None) -> object:  # fmt: skip
        if tracking is not None and tracking.name.startswith("relay:"):
            raise SystemExit("killed after publishing, before recording the position")
        return real_append(self, events, packets, tracking)  # type: ignore[arg-type]

    monkeypatch.setattr(Ledger, "append", die_on_tracking)
    with pytest.raises(SystemExit):
        relay_to_head(ledger, bus, batch=100)
    once = published(bus)
    monkeypatch.setattr(Ledger, "append", real_append)
    relay = relay_to_head(ledger, bus, batch=100)  # the same batch again
    assert relay.stats.published > 0
    assert published(bus) == once  # every message of the retried batch was a duplicate
    assert len(once) > len(before)
    assert ledger.tracked(relay.name) == ledger.head()
