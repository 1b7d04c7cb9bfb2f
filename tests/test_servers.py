"""The throwaway servers the suite starts: real PostgreSQL and real NATS JetStream."""

from __future__ import annotations

import asyncio

import nats
import psycopg
import pytest

from runners.embedded import EmbeddedNats, EmbeddedPostgres


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
