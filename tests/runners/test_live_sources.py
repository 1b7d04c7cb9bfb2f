"""Live sources: Rubin alerts in Confluent framing (schema-registry id, as Rubin's stream
sends them) published one per message onto NATS are ingested by a T0 worker, a corrupt
message is recorded and set aside; ``skyledger simulate --to`` publishes a stream."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from skyledger.ledger import AlertReceived, Ledger, StateCombined, digest_bytes
from skyledger.runners.bus import Bus, connect
from skyledger.runners.embedded import EmbeddedNats
from skyledger.runners.job import parse_job
from skyledger.runners.kafka_publish import kafka_packet
from skyledger.runners.live import LiveProcesses, publish_packets, settle
from skyledger.units import Alert
from skyledger.units.sources import iter_packets

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

ROOT = Path(__file__).resolve().parents[2]
RUBIN = ROOT / "tests" / "data" / "lsst" / "real"
ZTF = ROOT / "examples" / "data" / "ztf" / "ZTF21abiuvdk"

JOB = """\
name: rubin-live
channels:
  - name: ALL
shapers:
  lsst: {unit: LsstShaper}
combiner: {unit: LightCurveCombiner}
"""

_prefixes = itertools.count()


def rubin_frames() -> list[bytes]:
    """Return the real Rubin alerts, each framed as Rubin's Kafka stream frames them."""
    return [kafka_packet(a) for a in iter_packets([RUBIN]) if isinstance(a, Alert)]


def test_confluent_framed_rubin_alerts_on_nats_are_ingested_and_a_corrupt_one_set_aside(
    tmp_path: Path, pg_url: str, nats_server: EmbeddedNats
) -> None:
    frames = rubin_frames()
    assert len(frames) == 7
    job_path = tmp_path / "job.yaml"
    job_path.write_text(JOB)
    bus = Bus(nats_server.url, prefix=f"rubin{next(_prefixes)}", shards=4)
    corrupt = b"\x00\x00\x00\x03\xe8" + b"\xff" * 40  # schema id 1000, then garbage
    with (
        Ledger.open(pg_url) as ledger,
        LiveProcesses(str(job_path), pg_url, bus, None, str(tmp_path)) as procs,
    ):
        procs.start_all()
        asyncio.run(publish_packets(bus, [*frames[:3], corrupt, *frames[3:]]))
        settle(ledger, bus, parse_job(JOB), 4, timeout_s=120, alive=procs.check)
        alerts = [e for e in ledger.read(types=[AlertReceived]) if isinstance(e, AlertReceived)]
        states = list(ledger.read(types=[StateCombined]))
    readable = [a for a in alerts if a.error is None]
    assert [a.schema_name for a in readable] == ["lsst.v10_0"] * 7
    assert [a.digest for a in readable] == [digest_bytes(f) for f in frames]  # in order
    (bad,) = [a for a in alerts if a.error is not None]
    assert bad.locator.startswith(f"nats:{bus.alerts_subject}#4")  # the 4th message
    assert len(states) >= 5  # a state per alert of a stock with datapoints


def test_simulate_publishes_a_stream_to_nats(nats_server: EmbeddedNats) -> None:
    prefix = f"sim{next(_prefixes)}"
    done = subprocess.run(
        [sys.executable, "-m", "skyledger.runners.cli", "simulate", str(ZTF),
         "--to", nats_server.url, "--prefix", prefix, "--copies", "2", "--no-cutouts", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"published": 68' in done.stdout

    async def count() -> int:
        client = await connect(nats_server.url, "test")
        try:
            info = await client.jetstream().stream_info(Bus(nats_server.url, prefix).alerts_stream)
            return int(info.state.messages)
        finally:
            await client.close()

    assert asyncio.run(count()) == 68
