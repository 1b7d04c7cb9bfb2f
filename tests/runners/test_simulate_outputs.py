"""``skyledger simulate`` makes the same packets, byte for byte and in the same order,
whatever its output: files (--out), NATS or Kafka (--to), or a SimulatedSource in a job;
and a run over the files appends the same events as a run over the SimulatedSource."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from skyledger.ledger import Ledger
from skyledger.runners.bus import Bus, connect
from skyledger.runners.embedded import EmbeddedKafka, EmbeddedNats
from skyledger.runners.simulate import SimulatedSource
from skyledger.units import Alert
from skyledger.units.sources import iter_packets

from .live_kit import differences, facts

pytestmark = [pytest.mark.nats, pytest.mark.kafka, pytest.mark.slow]

NIGHT = Path(__file__).resolve().parents[2] / "tests" / "data" / "ztf" / "night"
OPTIONS = ["--copies", "3", "--shift-days", "1.0"]  # the stream: 3 x 699 alerts
SOURCE = {"paths": [str(NIGHT)], "copies": 3, "shift_days": 1.0}
ONE_FILE_ALERT = "3213262934615015018"  # the only alert of ztf_fink_distribute_02930a7e_n1
TIMEOUT_S = 120.0
PART_OF_NIGHT = (
    "fink-client_sample_part-00001_n54.avro",
    "ztf_fink_distribute_02930a7e_n1.avro",
    "ztf_fink_distribute_f25140c8_n106.avro",
)


def skyledger(*args: str) -> str:
    """Run the installed command; return its standard output."""
    script = shutil.which("skyledger", path=str(Path(sys.executable).parent))
    assert script
    done = subprocess.run(
        [script, *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def from_nats(url: str, prefix: str, count: int) -> list[bytes]:
    """Return the packets of the alerts stream, in stream order."""

    async def read() -> list[bytes]:
        client = await connect(url, "test reader")
        try:
            js = client.jetstream()
            stream = Bus(url, prefix).alerts_stream
            return [(await js.get_msg(stream, seq)).data or b"" for seq in range(1, count + 1)]
        finally:
            await client.close()

    return asyncio.run(read())


def from_kafka(bootstrap: str, topic: str, count: int) -> list[bytes]:
    """Return the messages of a one-partition topic, in offset order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader"})
    found: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        while len(found) < count:
            message = consumer.poll(TIMEOUT_S)
            assert message is not None, f"{len(found)} of {count} messages after {TIMEOUT_S} s"
            assert message.error() is None, message.error()
            found.append(message.value() or b"")
    finally:
        consumer.close()
    return found


@pytest.fixture(scope="module")
def simulated() -> list[bytes]:
    """Return the packets of the SimulatedSource stream the command makes."""
    items = SimulatedSource(SOURCE).packets()
    return [item.packet for item in items if isinstance(item, Alert)]


def test_files_nats_kafka_and_the_source_carry_the_same_packets_in_the_same_order(
    tmp_path: Path, simulated: list[bytes], nats_server: EmbeddedNats, kafka_server: EmbeddedKafka
) -> None:
    assert len(simulated) == 3 * 699
    skyledger("simulate", str(NIGHT), *OPTIONS, "--out", str(tmp_path / "out"))
    files = [a for a in iter_packets([tmp_path / "out"]) if isinstance(a, Alert)]
    assert [a.packet for a in files] == simulated
    (single,) = [a for a in files if a.alert_id == ONE_FILE_ALERT]
    assert len(single.packet) == (NIGHT / "ztf_fink_distribute_02930a7e_n1.avro").stat().st_size

    prefix = "simout"
    sent = json.loads(skyledger("simulate", str(NIGHT), *OPTIONS, "--to", nats_server.url,
                                "--prefix", prefix, "--json"))["published"]  # fmt: skip
    assert sent == len(simulated)
    assert from_nats(nats_server.url, prefix, sent) == simulated

    target = f"kafka://{kafka_server.bootstrap}/simout"
    sent = json.loads(skyledger("simulate", str(NIGHT), *OPTIONS, "--to", target,
                                "--partitions", "1", "--json"))["published"]  # fmt: skip
    assert sent == len(simulated)
    assert from_kafka(kafka_server.bootstrap, "simout", sent) == simulated


def test_a_run_over_the_files_appends_what_a_run_over_the_source_does(tmp_path: Path) -> None:
    # Part of the night, kept short: schema 3.3, a file of one 4.02 alert, more 4.02.
    originals = tmp_path / "originals"
    originals.mkdir()
    for name in PART_OF_NIGHT:
        (originals / name).symlink_to(NIGHT / name)
    skyledger("simulate", str(originals), "--copies", "2", "--shift-days", "1.0", "--out",
              str(tmp_path / "out"))  # fmt: skip
    job = "name: sim\nchannels:\n  - name: ALL\n"
    (tmp_path / "files.yaml").write_text(job)
    source = {"paths": [str(originals)], "copies": 2, "shift_days": 1.0}
    (tmp_path / "source.yaml").write_text(
        f"{job}sources:\n  - unit: SimulatedSource\n    config: {json.dumps(source)}\n"
    )
    urls = {name: f"sqlite:///{tmp_path}/{name}.sqlite" for name in ("files", "source")}
    skyledger("run", str(tmp_path / "files.yaml"), "--source", str(tmp_path / "out"),
              "--ledger", urls["files"], "--json")  # fmt: skip
    skyledger("run", str(tmp_path / "source.yaml"), "--ledger", urls["source"], "--json")
    with Ledger.open(urls["files"]) as ledger:
        over_files = facts(ledger)
    with Ledger.open(urls["source"]) as ledger:
        over_source = facts(ledger)
    assert len(over_files) > 2 * (54 + 1 + 106)
    assert differences(over_files, over_source) == ({}, {})
