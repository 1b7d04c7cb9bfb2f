"""Publishing alerts to Apache Kafka as the surveys do (``skyledger simulate --to
kafka://HOST:PORT/TOPIC``): ZTF and ELAsTiCC alerts as Avro containers, Rubin's framed
for a schema registry (``runners.kafka`` reads them)."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import Message as KafkaMessage
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from skyledger.ledger.errors import ConfigError
from skyledger.runners.kafka import REACH_S, log
from skyledger.units.alerts import Alert
from skyledger.units.packets.confluent import frame_confluent

__all__ = ["KafkaTarget", "kafka_packet", "publish_kafka"]



@dataclass(frozen=True)
class KafkaTarget:
    """Where ``skyledger simulate --to kafka://HOST:PORT/TOPIC`` publishes."""

    bootstrap: str
    topic: str

    @classmethod
    def parse(cls, url: str) -> KafkaTarget:
        """Return the target of a ``kafka://HOST:PORT[,HOST:PORT]/TOPIC`` URL, or raise
        ConfigError saying what is missing."""
        parts = urllib.parse.urlsplit(url)
        topic = parts.path.strip("/")
        if parts.scheme != "kafka" or not parts.netloc or not topic or "/" in topic:
            raise ConfigError(f"--to {url}: expected kafka://HOST:PORT/TOPIC")
        return cls(parts.netloc, topic)


def kafka_packet(alert: Alert) -> bytes:
    """Return an alert as its survey publishes it on Kafka: a ZTF (or ELAsTiCC) alert as
    one Avro container, a Rubin alert in the Confluent wire format, with the registry id
    of its schema (``lsst.v10_0``: 1000)."""
    if alert.survey != "lsst" or alert.packet[:1] == b"\x00":
        return alert.packet
    version = alert.schema.removeprefix("lsst.v")
    major, _, minor = version.partition("_")
    try:
        schema_id = int(major) * 100 + int(minor)
    except ValueError:
        raise ValueError(f"{alert.locator}: no registry id for schema {alert.schema!r}") from None
    record = dict(alert.payload)
    for key, value in list(record.items()):  # Fink's re-serialization fills absent
        if isinstance(value, dict) and all(v is None for v in value.values()):
            record[key] = None  # records with nulls, where Rubin sends null
    return frame_confluent(schema_id, record)


def publish_kafka(
    target: KafkaTarget,
    messages: Iterable[tuple[str, bytes]],
    *,
    rate: float | None = None,
    partitions: int = 4,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Publish (key, packet) pairs to a topic, one packet per message, at ``rate`` per
    second (as fast as the broker takes them if None), making the topic with
    ``partitions`` partitions if it does not exist; return how many the broker took.

    Messages of one key (a stock) go to one partition, in order. The producer is
    idempotent: a message retried after a lost acknowledgement is stored once.
    """
    _ensure_topic(target, partitions)
    failed: list[str] = []

    def delivered(error: KafkaError | None, message: KafkaMessage) -> None:
        if error is not None:
            failed.append(f"{message.topic()}: {error.str()}")

    producer = Producer({
        "bootstrap.servers": target.bootstrap, "enable.idempotence": True,
        "linger.ms": 5, "message.max.bytes": 10_000_000, "logger": log,
    })  # fmt: skip
    sent = 0
    started = time.monotonic()
    for key, data in messages:
        if rate:
            delay = started + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        while True:
            try:
                producer.produce(target.topic, data, key.encode(), on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
        producer.poll(0)
        sent += 1
        if on_sent is not None:
            on_sent(sent)
    left = producer.flush(120)
    if left or failed:
        problems = "; ".join(failed[:3]) or f"{left} messages not acknowledged in 120 s"
        raise ConfigError(f"--to kafka://{target.bootstrap}/{target.topic}: {problems}")
    return sent


def _ensure_topic(target: KafkaTarget, partitions: int) -> None:
    """Make the topic with ``partitions`` partitions if the broker has none of the name."""
    settings: dict[str, Any] = {"bootstrap.servers": target.bootstrap, "logger": log}
    admin = AdminClient(settings)
    try:
        if target.topic in admin.list_topics(timeout=REACH_S).topics:
            return
        futures = admin.create_topics([NewTopic(target.topic, partitions, 1)])
        futures[target.topic].result(30)
    except KafkaException as exc:
        error = exc.args[0]
        if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        raise ConfigError(f"--to kafka://{target.bootstrap}/{target.topic}: {error}") from None
