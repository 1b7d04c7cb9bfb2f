"""The throwaway servers the suite starts: real PostgreSQL, NATS JetStream and Apache
Kafka."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import psycopg
import pytest

from skyledger.runners.embedded import EmbeddedKafka, EmbeddedNats, EmbeddedPostgres, kafka_problem


def test_postgres_listens_on_loopback_and_runs_sql(pg_server: EmbeddedPostgres) -> None:
    assert pg_server.url().startswith("postgresql://postgres@127.0.0.1:")
    with psycopg.connect(pg_server.url()) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    assert int(row[0]) >= 150000


@pytest.mark.nats
def test_nats_jetstream_stores_and_redelivers(nats_server: EmbeddedNats) -> None:
    async def scenario() -> list[bytes]:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(name="SMOKE", subjects=["smoke.>"])
        for i in range(3):
            ack = await js.publish("smoke.x", f"m{i}".encode(), headers={"Nats-Msg-Id": str(i)})
            assert ack.seq == i + 1
        dup = await js.publish("smoke.x", b"m0", headers={"Nats-Msg-Id": "0"})
        assert dup.duplicate  # the relay relies on Nats-Msg-Id deduplication
        sub = await js.pull_subscribe("smoke.x", durable="worker")
        msgs = await sub.fetch(3, timeout=5)
        for msg in msgs:
            await msg.ack()
        await nc.close()
        return [m.data for m in msgs]

    assert asyncio.run(scenario()) == [b"m0", b"m1", b"m2"]


@pytest.mark.kafka
def test_kafka_keeps_messages_and_offsets_across_a_broker_restart(
    kafka_server: EmbeddedKafka,
) -> None:
    from confluent_kafka import Consumer, KafkaError, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    servers = {"bootstrap.servers": kafka_server.bootstrap}
    admin = AdminClient(servers)  # kept while its futures are pending
    admin.create_topics([NewTopic("smoke", num_partitions=2)])["smoke"].result(timeout=30)

    def produce(values: list[str]) -> None:
        producer = Producer(servers | {"enable.idempotence": True})
        for value in values:
            producer.produce("smoke", key=value.encode(), value=value.encode())
        assert producer.flush(30) == 0

    def consume(n: int) -> list[tuple[int, int, str]]:
        consumer = Consumer(servers | {"group.id": "smoke", "auto.offset.reset": "earliest",
                                       "enable.auto.commit": False})  # fmt: skip
        consumer.subscribe(["smoke"])
        got: list[tuple[int, int, str]] = []
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or (msg.error() and msg.error().code() == KafkaError._PARTITION_EOF):
                continue
            assert msg.error() is None, msg.error()
            got.append((msg.partition(), msg.offset(), msg.value().decode()))
            consumer.commit(msg, asynchronous=False)
        consumer.close()
        return got

    produce([f"a{i}" for i in range(10)])
    first = consume(10)
    assert sorted(v for *_, v in first) == sorted(f"a{i}" for i in range(10))
    assert {p for p, *_ in first} == {0, 1}  # keys spread over both partitions
    kafka_server.restart(kill=True)  # a crash: the log and the committed offsets survive
    produce([f"b{i}" for i in range(5)])
    after = consume(5)
    assert sorted(v for *_, v in after) == sorted(f"b{i}" for i in range(5))  # none again


def test_without_java_or_jars_kafka_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKYLEDGER_KAFKA_JARS", str(tmp_path))  # no jars there
    assert kafka_problem() == (
        f"no Kafka broker jars in {tmp_path}: fetch them with "
        "`mvn -q -B -f runners/kafka_broker/pom.xml dependency:copy-dependencies`"
    )
    monkeypatch.setenv("PATH", str(tmp_path))  # and no java
    problem = kafka_problem()
    assert problem is not None
    assert problem.startswith("no Java runtime (java) on PATH")
    with pytest.raises(RuntimeError, match="no Java runtime"):
        EmbeddedKafka()
