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
speed by a third over minutes); each figure is the mean of its rounds' rates (alerts
over the wall time of the whole ingest, joining the group included). A whole ingest is
measured, not slices taking turns: each slice would end with worker processes waiting
for the last chunk, which costs a file of 1,000 alerts (one chunk) far more than 64
messages.

Before the rounds, 500 messages are read with a throwaway group: a broker formatted a
moment ago makes its group coordinator on the first join (one to three seconds), and the
worker processes start on their first chunk; a running system pays neither. Each
database is dropped after its ingest and a checkpoint taken, so that no ingest pays for
an earlier one's autovacuum or dirty pages. The CPU seconds of this process, its worker
processes, the broker and the database server are printed for each ingest.

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
import psycopg

from skyledger.ledger import AlertReceived, Ledger
from skyledger.projections.pool import Workers
from skyledger.projections.t0 import Ingest
from skyledger.runners.embedded import EmbeddedKafka, EmbeddedPostgres
from skyledger.runners.job import parse_job
from skyledger.runners.kafka import KafkaSource, KafkaTarget, kafka_packet, publish_kafka
from skyledger.runners.simulate import SimulatedSource, write_alerts
from skyledger.runners.tiers import JobUnits
from skyledger.units import Alert, Source
from skyledger.units.contracts import StreamSource
from skyledger.units.sources import FileSource

NIGHT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ztf" / "night"
RATIO_TARGET = 0.9
PARTITIONS = 4

JOB = """
name: bench-kafka
channels:
  - name: SN
    filter: {unit: ZtfFilter}
"""


def ingest(
    url: str, source: Source, workers: Workers, max_alerts: int | None = None
) -> tuple[int, float]:
    """Ingest a source (or, from a stream, ``max_alerts`` messages of it) into the ledger
    at ``url``; return the alerts read and the seconds."""
    units = JobUnits(parse_job(JOB), [source])
    with Ledger.open(url) as ledger:
        started = time.perf_counter()
        t0 = Ingest(ledger, units.shapers, units.filters, "bench", {}, workers=workers)
        if isinstance(source, StreamSource):
            stats = t0.run_stream(source, source.label(), max_alerts=max_alerts)
        else:
            stats = t0.run(source, "files")
        return stats.alerts, time.perf_counter() - started


def stored_alerts(url: str) -> int:
    """Return the number of AlertReceived events in the ledger at ``url``."""
    with Ledger.open(url) as ledger:
        return sum(1 for _ in ledger.read(types=[AlertReceived]))


def cpu_seconds(broker_pid: int, database_pid: int) -> dict[str, float]:
    """Return the CPU seconds used so far by this process, its worker processes, the
    broker and the database server (with its ended connections' processes)."""

    def of(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # a process that ended meanwhile
            return 0.0
        return float(times.user + times.system)

    def python(process: psutil.Process) -> bool:
        try:
            return process.pid != broker_pid and "python" in process.name()
        except psutil.NoSuchProcess:
            return False

    workers = [p for p in psutil.Process().children(recursive=True) if python(p)]

    server = psutil.Process(database_pid)
    times = server.cpu_times()  # its own and its ended connections' processes'
    database = times.user + times.system + times.children_user + times.children_system
    database += sum(of(p) for p in server.children())
    own = os.times()
    return {"runner": own.user + own.system, "workers": sum(of(p) for p in workers),
            "broker": of(psutil.Process(broker_pid)), "database": database}  # fmt: skip


def settle(pg: EmbeddedPostgres, dbname: str) -> None:
    """Drop a measured database and write every dirty page out, so that the next ingest
    does not pay for this one's autovacuum and checkpoint."""
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')
        conn.execute("CHECKPOINT")


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
    total = len(alerts)
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

        def from_kafka(group: str) -> KafkaSource:
            return KafkaSource({"bootstrap_servers": kafka.bootstrap, "topics": [topic],
                                "group_id": group})  # fmt: skip

        # A broker that has just been formatted makes its group coordinator on the first
        # group's join (a second or three); the worker processes start on their first
        # chunk. Neither is what a running system pays, so a few messages are read first.
        ingest(pg.create_database("bench_warm_up"), from_kafka("warm-up"), workers, 500)
        settle(pg, "bench_warm_up")
        rates: dict[str, list[float]] = {"files": [], "kafka": []}
        assert kafka.proc is not None
        assert pg.proc is not None
        servers = (kafka.proc.pid, pg.proc.pid)
        for round_ in range(args.rounds):
            order = ("files", "kafka") if round_ % 2 == 0 else ("kafka", "files")
            for kind in order:
                url = pg.create_database(f"bench_{kind}_{round_}")
                source: Source
                if kind == "files":
                    source = FileSource({"paths": [str(Path(tmp) / "files")]})
                else:
                    source = from_kafka(f"bench{round_}")
                before = cpu_seconds(*servers)
                n, seconds = ingest(url, source, workers)
                used = {k: v - before[k] for k, v in cpu_seconds(*servers).items()}
                stored = stored_alerts(url)
                if not n == stored == total:
                    sys.exit(f"{kind}: the ledger holds {stored} alerts, ingest read {n}, "
                             f"there are {total}")  # fmt: skip
                settle(pg, f"bench_{kind}_{round_}")
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
