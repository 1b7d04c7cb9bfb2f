"""T0 ingest from Kafka beside T0 ingest of the same packets from files, in one run.

    python bench/kafka_source.py [--alerts 50000] [--workers 2] [--rounds 2]

The ZTF night packets (``../shared/data/ztf/night``, or ``--night``) are replayed by the
simulator as new alerts of new stocks until there are at least ``--alerts``, then
published to a topic of 4 partitions of a throwaway Apache Kafka broker (KRaft, from the
jars the install step fetched), keyed by stock as ``skyledger simulate --to kafka://``
does, and written as Avro container files of 1,000 alerts (as ``skyledger simulate
--out`` does). Both are then ingested by T0 (decoding, shaping, the demo's ZtfFilter,
appending with the positions) into a fresh PostgreSQL ledger each time, with
``--workers`` worker processes: from the files (``Ingest.run``, FileSource) and from
Kafka (``Ingest.run_stream``, KafkaSource, a new consumer group: the consumer joins its
group, reads every partition to its end and commits the offsets). Each round ingests
both, files first in odd rounds and Kafka first in even ones (these machines drift in
speed over minutes); each figure is the mean of its rounds' rates (alerts over the wall
time of the whole ingest, joining the group included). The CPU seconds of this process,
its worker processes and the broker are printed for each ingest.

Target: ``kafka_ratio`` (Kafka over files) at least 0.9. The last line:

    RESULT kafka_aps=... file_aps=... kafka_ratio=...
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

from ledger import AlertReceived, Ledger
from projections.pool import Workers
from projections.t0 import Ingest
from runners.embedded import EmbeddedKafka, EmbeddedPostgres
from runners.job import parse_job
from runners.kafka import KafkaSource, KafkaTarget, kafka_packet, publish_kafka
from runners.simulate import SimulatedSource, write_alerts
from runners.tiers import JobUnits
from units import Alert, Source
from units.contracts import StreamSource
from units.sources import FileSource

NIGHT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ztf" / "night"
RATIO_TARGET = 0.9
PARTITIONS = 4

JOB = """
name: bench-kafka
channels:
  - name: SN
    filter: {unit: ZtfFilter}
"""


def ingest(url: str, source: Source, workers: Workers) -> tuple[int, float]:
    """Ingest a source into the ledger at ``url``; return the alerts and the seconds."""
    units = JobUnits(parse_job(JOB), [source])
    with Ledger.open(url) as ledger:
        started = time.perf_counter()
        t0 = Ingest(ledger, units.shapers, units.filters, "bench", {}, workers=workers)
        if isinstance(source, StreamSource):
            stats = t0.run_stream(source, source.label())
        else:
            stats = t0.run(source, "files")
        seconds = time.perf_counter() - started
        stored = sum(1 for _ in ledger.read(types=[AlertReceived]))
    if stored != stats.alerts:
        sys.exit(f"the ledger holds {stored} alerts, ingest read {stats.alerts}")
    return stats.alerts, seconds


def cpu_seconds(broker_pid: int) -> dict[str, float]:
    """Return the CPU seconds used so far by this process, its worker processes and the
    broker (the database's are not counted)."""
    me = psutil.Process()
    workers = [p for p in me.children(recursive=True) if p.pid != broker_pid and
               "python" in p.name()]  # fmt: skip

    def of(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            return 0.0
        return float(times.user + times.system)

    own = os.times()
    return {"runner": own.user + own.system, "workers": sum(of(p) for p in workers),
            "broker": of(psutil.Process(broker_pid))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--night", type=Path, default=NIGHT)
    args = parser.parse_args()

    originals = [a for a in SimulatedSource({"paths": [str(args.night)]}).packets()
                 if isinstance(a, Alert)]  # fmt: skip
    copies = -(-args.alerts // len(originals))
    simulated = SimulatedSource({"paths": [str(args.night)], "copies": copies, "cutouts": False})
    alerts = [a for a in simulated.packets() if isinstance(a, Alert)]
    size = sum(len(a.packet) for a in alerts) / 1e6
    print(f"{len(alerts)} alerts ({copies} copies of {len(originals)}), {size:.0f} MB")

    with (
        tempfile.TemporaryDirectory(prefix="skyledger-bench-kafka-") as tmp,
        EmbeddedPostgres(fsync=False) as pg,
        EmbeddedKafka(heap_mb=1024) as kafka,
        Workers(args.workers) as workers,
    ):
        files = write_alerts(alerts, Path(tmp) / "files", per_file=1000)
        topic = "ztf_20261201_programid1"
        started = time.perf_counter()
        keyed = ((a.stock, kafka_packet(a)) for a in alerts)
        publish_kafka(KafkaTarget(kafka.bootstrap, topic), keyed, partitions=PARTITIONS)
        print(f"published to {PARTITIONS} partitions in {time.perf_counter() - started:.1f} s; "
              f"{len(files)} files written")  # fmt: skip
        del alerts
        rates: dict[str, list[float]] = {"files": [], "kafka": []}
        for round_ in range(args.rounds):
            order = ("files", "kafka") if round_ % 2 == 0 else ("kafka", "files")
            for kind in order:
                url = pg.create_database(f"bench_{kind}_{round_}")
                source: Source
                if kind == "files":
                    source = FileSource({"paths": [str(Path(tmp) / "files")]})
                else:
                    config = {"bootstrap_servers": kafka.bootstrap, "topics": [topic],
                              "group_id": f"bench{round_}"}  # fmt: skip
                    source = KafkaSource(config)
                before = cpu_seconds(kafka.proc.pid)
                n, seconds = ingest(url, source, workers)
                used = {k: v - before.get(k, 0.0) for k, v in cpu_seconds(kafka.proc.pid).items()}
                rates[kind].append(n / seconds)
                print(f"round {round_ + 1} {kind:5}: {n} alerts in {seconds:.2f} s, "
                      f"{n / seconds:.0f} alerts/s; CPU s: "
                      + ", ".join(f"{k} {v:.1f}" for k, v in used.items()), flush=True)  # fmt: skip
    kafka_aps, file_aps = statistics.mean(rates["kafka"]), statistics.mean(rates["files"])
    ratio = kafka_aps / file_aps
    verdict = "meets" if ratio >= RATIO_TARGET else "misses"
    print(f"kafka_ratio {ratio:.3f} {verdict} the target of {RATIO_TARGET}")
    print(f"RESULT kafka_aps={kafka_aps:.0f} file_aps={file_aps:.0f} kafka_ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
