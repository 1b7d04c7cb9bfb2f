"""Kafka sources against a real Apache Kafka broker (KRaft, started from the jars the
install step fetched): ZTF and Rubin messages read as files are, bad messages set aside
with topic, partition and offset, exactly once across a SIGKILLed consumer, a broker
restart and a consumer group handing partitions on, and live workers that keep reading.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from fastavro.schema import to_parsing_canonical_form

from skyledger.ledger import (
    AlertReceived,
    DatapointAdded,
    FilterDecided,
    Ledger,
    StateCombined,
    digest_bytes,
)
from skyledger.projections.t0 import Ingest
from skyledger.runners.bus import Bus
from skyledger.runners.embedded import EmbeddedKafka, EmbeddedNats
from skyledger.runners.job import parse_job
from skyledger.runners.kafka import KafkaSource, KafkaStream
from skyledger.runners.kafka_publish import KafkaTarget, kafka_packet, publish_kafka
from skyledger.runners.live import LiveProcesses
from skyledger.runners.local import LocalRunner
from skyledger.runners.replay import ReplayRunner
from skyledger.runners.simulate import SimulatedSource
from skyledger.units import Alert
from skyledger.units.packets.confluent import registry_schema
from skyledger.units.sources import FileSource, iter_packets

from .live_kit import differences, facts

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
NIGHT = DATA / "ztf" / "night" / "ztf_fink_distribute_f25140c8_n106.avro"
ZTF21 = ROOT / "examples" / "data" / "ztf" / "ZTF21abiuvdk"
RUBIN = DATA / "lsst" / "real"
TIMEOUT_S = 240.0

_names = itertools.count()


def topic_name(what: str) -> str:
    """Return a topic name no other test uses (one broker serves the whole session)."""
    return f"{what}_{os.getpid()}_{next(_names)}"


def job_text(
    bootstrap: str, topics: list[str], group: str, combine: bool = True, **extra: Any
) -> str:
    """Return a job reading ``topics`` with one channel taking every alert (and the
    light-curve combiner, if ``combine``: T0 alone where T0 is what a test is about)."""
    config = {"bootstrap_servers": bootstrap, "topics": topics, "group_id": group} | extra
    return (
        "name: kafka\n"
        f"sources:\n  - unit: KafkaSource\n    config: {json.dumps(config)}\n"
        "channels:\n  - name: ALL\n" + ("combiner: {unit: LightCurveCombiner}\n" if combine else "")
    )


def alerts_of(*paths: Path) -> list[Alert]:
    """Return the readable alerts under ``paths``, in reading order."""
    return [a for a in iter_packets(paths) if isinstance(a, Alert)]


def publish(bootstrap: str, topic: str, alerts: list[Alert], partitions: int = 4) -> list[bytes]:
    """Publish alerts as their surveys do (keyed by stock); return the messages."""
    packets = [kafka_packet(a) for a in alerts]
    target = KafkaTarget(bootstrap, topic)
    keyed = [(a.stock, p) for a, p in zip(alerts, packets, strict=True)]
    assert publish_kafka(target, keyed, partitions=partitions) == len(alerts)
    return packets


def received(ledger: Ledger) -> list[AlertReceived]:
    """Return every AlertReceived of a ledger."""
    return [e for e in ledger.read(types=[AlertReceived]) if isinstance(e, AlertReceived)]


def ids_of(ledger: Ledger, kind: type[DatapointAdded | StateCombined]) -> set[str]:
    """Return the ids of one kind of event in a ledger."""
    return {e.id for e in ledger.read(types=[kind])}


def watermarks(bootstrap: str, topic: str, group: str) -> tuple[list[int], list[int]]:
    """Return each partition's end offset and the group's committed offset."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts]  # fmt: skip
        committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return ends, [tp.offset for tp in committed]
    finally:
        consumer.close()


def positions(ledger: Ledger, ingest: Ingest, stream: str, topic: str, n: int) -> list[int]:
    """Return the ledger's position in each partition of a topic."""
    names = [ingest.stream_tracking_name(f"{stream}:{topic}:{p}") for p in range(n)]
    found = ledger.tracked_many(names)
    return [found[name] for name in names]


# -- a schema registry (Confluent's REST interface), for ids Rubin has not shipped yet --


class Registry(HTTPServer):
    """Serves ``GET /schemas/ids/<id>`` for the ids in ``schemas``, 404 for others."""

    def __init__(self, schemas: dict[int, str]) -> None:
        super().__init__(("127.0.0.1", 0), _RegistryHandler)
        self.schemas = schemas
        self.asked: list[str] = []

    @property
    def url(self) -> str:
        """Return the registry's URL."""
        return f"http://127.0.0.1:{self.server_port}"


class _RegistryHandler(BaseHTTPRequestHandler):
    server: Registry

    def do_GET(self) -> None:
        self.server.asked.append(self.path)
        schema_id = self.path.rsplit("/", 1)[-1]
        text = self.server.schemas.get(int(schema_id)) if schema_id.isdigit() else None
        body = json.dumps({"schema": text} if text else {"error_code": 40403}).encode()
        self.send_response(200 if text else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test's output clean."""


@pytest.fixture
def registry() -> Iterator[Registry]:
    """Serve a registry holding the official v10.0 schema under the id 4242."""
    schema = to_parsing_canonical_form(registry_schema(1000))
    server = Registry({4242: schema})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_run_reads_ztf_and_rubin_messages_as_it_reads_files_and_sets_bad_ones_aside(
    kafka_server: EmbeddedKafka, pg_url: str, tmp_path: Path, registry: Registry
) -> None:
    bootstrap = kafka_server.bootstrap
    main, bad = topic_name("alerts"), topic_name("bad")
    ztf, rubin = alerts_of(ZTF21, NIGHT), alerts_of(RUBIN)
    assert (len(ztf), len(rubin)) == (140, 7)
    packets = publish(bootstrap, main, ztf + rubin, partitions=3)
    v10 = kafka_packet(rubin[0])  # framed with schema id 1000 (lsst.v10_0)
    from_registry = b"\x00" + (4242).to_bytes(4, "big") + v10[5:]
    unknown = b"\x00" + (4343).to_bytes(4, "big") + v10[5:]
    truncated = ztf[0].packet[: len(ztf[0].packet) * 6 // 10]
    bad_messages = [
        b"not an alert at all",
        truncated,
        unknown,
        from_registry,
        b"\x00\x00\x00\x03\xe8\xff",
    ]
    publish_kafka(KafkaTarget(bootstrap, bad), [("x", m) for m in bad_messages], partitions=1)
    group = topic_name("group")
    text = job_text(bootstrap, [main, bad], group, schema_registry=registry.url)
    job = parse_job(text)

    with Ledger.open(pg_url) as ledger:
        summary = LocalRunner(job, text, ledger).run()
        alerts = received(ledger)
        readable = {a.digest for a in alerts if a.error is None}
        errors = {a.locator.split("#")[0]: a.error for a in alerts if a.error is not None}
        kafka_points, kafka_states = ids_of(ledger, DatapointAdded), ids_of(ledger, StateCombined)
        again = LocalRunner(job, text, ledger).run()
        # A new filter decides on every alert again, from the stored packets: the one
        # decoded with the registry's schema too (the schema is kept with the packets).
        filtered = "name: rubin\nchannels:\n  - name: RUBIN\n    filter: {unit: LsstFilter}\n"
        ReplayRunner(parse_job(filtered), filtered, ledger, "rubin", read_model=False).run()
        (registry_alert,) = [a for a in received(ledger)
                             if a.digest == digest_bytes(from_registry)]  # fmt: skip
        decided = {d.alert_digest for d in ledger.read(types=[FilterDecided])
                   if isinstance(d, FilterDecided) and d.channel == "RUBIN"}  # fmt: skip
        ingest = Ingest(ledger, LocalRunner(job, text, ledger).shapers, [], "", {})
        stream = KafkaStream(KafkaSource(job.sources[0].config), lambda ps: {})
        cluster = stream.cluster
        stream.close()
        at = positions(ledger, ingest, f"kafka:{cluster}", main, 3)

    assert summary.status == "ok"
    assert summary.alerts["read"] == 148  # 140 ZTF, 7 Rubin, one from the registry's schema
    assert readable == {digest_bytes(p) for p in [*packets, from_registry]}
    assert registry_alert.schema_digest is not None
    assert registry_alert.digest in decided
    assert registry.asked == ["/schemas/ids/4343", "/schemas/ids/4242"]  # once per id
    assert sorted(errors) == [f"kafka:{bad}/0@{n}" for n in (0, 1, 2, 4)]
    assert errors[f"kafka:{bad}/0@0"].startswith("neither an Avro container")
    assert "truncated" in errors[f"kafka:{bad}/0@1"] or "corrupt" in errors[f"kafka:{bad}/0@1"]
    assert "schema id 4343" in errors[f"kafka:{bad}/0@2"]
    assert "HTTP 404" in errors[f"kafka:{bad}/0@2"]
    assert "cannot decode Confluent-framed packet with schema id 1000" in errors[f"kafka:{bad}/0@4"]

    # The same packets read from files give the same datapoints and states.
    file_text = "name: files\nchannels:\n  - name: ALL\ncombiner: {unit: LightCurveCombiner}\n"
    with Ledger.open(f"sqlite:///{tmp_path / 'files.db'}") as files:
        LocalRunner(parse_job(file_text), file_text, files,
                    [FileSource({"paths": [str(ZTF21), str(NIGHT)]})]).run()  # fmt: skip
        file_points, file_states = ids_of(files, DatapointAdded), ids_of(files, StateCombined)
    assert file_points <= kafka_points
    assert file_states <= kafka_states
    assert len(kafka_states - file_states) == 8  # a state per Rubin alert, the registry's too

    # Read to the end: the ledger's positions are the ends, the group committed them,
    # and a second run reads nothing, saying where it resumed.
    ends, committed = watermarks(bootstrap, main, group)
    assert at == ends == committed
    assert again.alerts["read"] == 0
    assert again.status == "ok"
    assert len(again.partitions) == 4


def skyledger() -> str:
    """Return the installed console script."""
    script = shutil.which("skyledger", path=str(Path(sys.executable).parent))
    assert script
    return script


def simulate_to(bootstrap: str, topic: str, copies: int, partitions: int = 4) -> int:
    """Publish copies of the ZTF night with ``skyledger simulate --to kafka://``."""
    done = subprocess.run(
        [skyledger(), "simulate", str(DATA / "ztf" / "night"), "--copies", str(copies),
         "--no-cutouts", "--to", f"kafka://{bootstrap}/{topic}", "--partitions",
         str(partitions), "--json"],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    published: int = json.loads(done.stdout)["published"]
    return published


def count_alerts(url: str) -> int:
    """Return how many AlertReceived a ledger holds (0 before it exists)."""
    import psycopg

    try:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM skyledger_events WHERE topic LIKE %s", ["%AlertReceived%"]
            ).fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return 0


def test_a_consumer_killed_mid_stream_leaves_the_ledger_an_undisturbed_run_makes(
    kafka_server: EmbeddedKafka, pg_server: Any, pg_url: str, tmp_path: Path
) -> None:
    bootstrap = kafka_server.bootstrap
    topic = topic_name("killed")
    total = simulate_to(bootstrap, topic, copies=1)
    assert total == 699
    client = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}
    job = tmp_path / "job.yaml"
    job.write_text(job_text(bootstrap, [topic], topic_name("g"), False, client=client))
    command = [skyledger(), "run", str(job), "--ledger", pg_url, "--json"]
    log = tmp_path / "killed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while count_alerts(pg_url) < 100 and proc.poll() is None:
                assert time.monotonic() < deadline, "the run appended no alerts"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            code = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == -signal.SIGKILL, f"the run ended before it was killed:\n{log.read_text()}"
    at_kill = count_alerts(pg_url)
    assert 0 < at_kill < total
    done = subprocess.run(command, capture_output=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout)
    assert summary["partitions"], "the second run resumed from the ledger's positions"
    assert summary["alerts"]["read"] < total  # not the whole topic again

    undisturbed = pg_server.create_database(f"undisturbed_{os.getpid()}_{next(_names)}")
    other = tmp_path / "other.yaml"
    other.write_text(job_text(bootstrap, [topic], topic_name("g"), False, client=client))
    done = subprocess.run(
        [skyledger(), "run", str(other), "--ledger", undisturbed, "--json"],
        capture_output=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    with Ledger.open(pg_url) as killed, Ledger.open(undisturbed) as whole:
        found, expected = facts(killed), facts(whole)
        assert len(received(killed)) == total
    assert differences(found, expected) == ({}, {})


def test_a_broker_restarted_mid_stream_is_reconnected_to_and_the_run_finishes(
    pg_url: str,
) -> None:
    with EmbeddedKafka() as broker:  # its own: a restart that failed breaks no other test
        restarted_mid_stream(broker, pg_url)


def restarted_mid_stream(broker: EmbeddedKafka, pg_url: str) -> None:
    """Restart ``broker`` (SIGINT, 2 s down) after 300 alerts of a run reading from it."""
    topic = topic_name("restart")
    total = simulate_to(broker.bootstrap, topic, copies=2)
    client = {"reconnect.backoff.max.ms": "1000", "session.timeout.ms": "6000"}
    text = job_text(broker.bootstrap, [topic], topic_name("g"), False, client=client)
    restarted, down = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def restart() -> None:
        try:
            broker.restart(down_s=2.0, on_down=down.set)
        except BaseException as exc:  # reported below, with the broker's log
            failed.append(exc)
            down.set()
        restarted.set()

    def progress(stage: str, done: int, _total: int | None) -> None:
        if stage == "T0 ingest":
            time.sleep(0.004)
            if done == 300:
                threading.Thread(target=restart).start()
                # Go on only once the broker is down: on a fast machine the run could
                # otherwise read (and commit) the rest before the broker stopped.
                assert down.wait(120), "the broker did not stop"

    with Ledger.open(pg_url) as ledger:
        runner = LocalRunner(parse_job(text), text, ledger, progress=progress, read_model=False)
        summary = runner.run()
        alerts = received(ledger)
    assert restarted.wait(150)
    assert not failed, failed
    assert summary.status == "ok"
    assert len({a.digest for a in alerts}) == len(alerts) == total
    assert any("errors and got over them" in note for note in summary.notes), summary.notes


def test_two_consumers_split_the_partitions_and_one_leaving_hands_its_own_on(
    kafka_server: EmbeddedKafka, pg_url: str
) -> None:
    bootstrap = kafka_server.bootstrap
    topic = topic_name("group")
    # The topic is made with a few real packets (another stock than the night's); the
    # night's copies are published only once both consumers hold their half, so neither
    # can read everything before the other joins, however fast or slow the machine.
    total = len(publish(bootstrap, topic, alerts_of(ZTF21)))
    text = job_text(bootstrap, [topic], topic_name("g"))
    job = parse_job(text)
    seen: dict[str, set[str]] = {"a": set(), "b": set()}
    first_b: list[set[str]] = []
    done_a = threading.Event()

    class Watched(KafkaSource):
        name = "KafkaSource"
        role = "a"

        def open(self, start: Any) -> KafkaStream:
            stream = super().open(start)
            streams[self.role] = stream
            return stream

    streams: dict[str, KafkaStream] = {}

    def until(what: str, condition: Any) -> None:
        deadline = time.monotonic() + TIMEOUT_S  # a rebalance: no progress to follow
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    with Ledger.open(pg_url) as ledger:
        runner = LocalRunner(job, text, ledger)
        ingests = {r: Ingest(ledger, runner.shapers, runner.filters, r, {}, batch_size=500)
                   for r in "ab"}  # fmt: skip

        def stop_b() -> bool:
            stream = streams.get("b")
            if stream is not None:
                seen["b"] |= set(stream.assigned)
                if stream.assigned and not first_b:
                    first_b.append(set(stream.assigned))
            return ingests["b"].stats.alerts >= 200  # leaves after a couple of batches

        def stop_a() -> bool:
            stream = streams.get("a")
            if stream is not None:
                seen["a"] |= set(stream.assigned)
            return done_a.is_set()

        def consume(role: str, stop: Any) -> None:
            source = Watched(job.sources[0].config)
            source.role = role
            ingests[role].run_stream(source, "kafka", to_end=False, stop=stop)

        a = threading.Thread(target=consume, args=("a", stop_a))
        a.start()
        until("the first consumer was assigned the partitions",
              lambda: "a" in streams and len(streams["a"].assigned) == 4)  # fmt: skip
        b = threading.Thread(target=consume, args=("b", stop_b))
        b.start()
        until("the second consumer was assigned partitions",
              lambda: first_b and len(streams["a"].assigned) == 2)  # fmt: skip
        total += simulate_to(bootstrap, topic, copies=3)
        b.join(TIMEOUT_S)
        assert not b.is_alive(), "the second consumer did not leave"
        count, deadline = -1, 0.0
        while (now := len(received(ledger))) < total:  # waits while the first one reads on
            if now != count:
                count, deadline = now, time.monotonic() + TIMEOUT_S
            assert time.monotonic() < deadline, f"{now} of {total} alerts, and no more"
            time.sleep(0.2)
        done_a.set()
        a.join(TIMEOUT_S)
        alerts = received(ledger)
    assert first_b, "the second consumer was assigned partitions"
    assert len(first_b[0]) == 2, "the second consumer got half the partitions"
    assert len(seen["a"]) == 4  # all of them, once the other left
    assert ingests["b"].stats.alerts >= 200
    assert len({a.digest for a in alerts}) == len(alerts) == total


def test_live_workers_keep_reading_a_kafka_topic(
    kafka_server: EmbeddedKafka, nats_server: EmbeddedNats, pg_url: str, tmp_path: Path
) -> None:
    bootstrap = kafka_server.bootstrap
    topic = topic_name("live")
    night, later = alerts_of(NIGHT), alerts_of(ZTF21)
    job_path = tmp_path / "job.yaml"
    job_path.write_text(job_text(bootstrap, [topic], topic_name("g")))
    bus = Bus(nats_server.url, prefix=f"kafka{os.getpid()}{next(_names)}", shards=4)
    publish(bootstrap, topic, night)
    with (
        Ledger.open(pg_url) as ledger,
        LiveProcesses(str(job_path), pg_url, bus, None, str(tmp_path)) as procs,
    ):
        procs.start_all()
        wait_for(lambda: len(received(ledger)) == len(night), procs)
        publish(bootstrap, topic, later)  # the workers are still reading
        wait_for(lambda: len(received(ledger)) == len(night) + len(later), procs)
        wait_for(lambda: len(ids_of(ledger, StateCombined)) == len(night) + len(later), procs)


def wait_for(condition: Any, procs: LiveProcesses) -> None:
    """Wait until ``condition()`` holds, checking that the processes live."""
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        procs.check()
        assert time.monotonic() < deadline, "the live workers did not get there in time"
        time.sleep(0.2)


def test_simulated_copies_are_published_keyed_by_stock(kafka_server: EmbeddedKafka) -> None:
    topic = topic_name("sim")
    total = simulate_to(kafka_server.bootstrap, topic, copies=2, partitions=2)
    source = SimulatedSource({"paths": [str(DATA / "ztf" / "night")], "copies": 2,
                              "cutouts": False})  # fmt: skip
    expected = [a for a in source.packets() if isinstance(a, Alert)]
    assert total == len(expected) == 2 * 699
    consumer = Consumer({"bootstrap.servers": kafka_server.bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([topic])
    got: dict[int, list[tuple[str, bytes]]] = {}
    deadline = time.monotonic() + 60
    while sum(map(len, got.values())) < total and time.monotonic() < deadline:
        for m in consumer.consume(500, 1.0):
            if m.error() is None:
                got.setdefault(m.partition() or 0, []).append((m.key().decode(), m.value()))
    consumer.close()
    assert sorted(p for p, _ in [(m, None) for m in got]) == [0, 1]
    by_stock: dict[str, set[int]] = {}
    for partition, messages in got.items():
        for key, _ in messages:
            by_stock.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in by_stock.values())  # a stock keeps one partition
    assert sorted(v for msgs in got.values() for _, v in msgs) == sorted(a.packet for a in expected)


def test_a_scram_broker_is_read_with_the_password_from_the_environment_and_never_recorded(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("java") is None:
        pytest.skip("no java on PATH: the Kafka broker cannot run here")
    with EmbeddedKafka(scram=("rubin-broker", "s3cret-pw")) as broker:
        topic = topic_name("rubin")
        publish(broker.bootstrap, topic, alerts_of(RUBIN), partitions=1)
        client = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                  "sasl.username": "rubin-broker",
                  "sasl.password": "${SKYLEDGER_TEST_KAFKA_PASSWORD}"}  # fmt: skip
        text = job_text(broker.sasl_bootstrap, [topic], topic_name("g"), client=client)
        job = parse_job(text)
        monkeypatch.setenv("SKYLEDGER_TEST_KAFKA_PASSWORD", "wrong")
        (problem,) = KafkaSource(job.sources[0].config).problems()
        assert problem.startswith("bootstrap_servers: no broker answered")
        assert "uthentication" in problem, problem
        monkeypatch.setenv("SKYLEDGER_TEST_KAFKA_PASSWORD", "s3cret-pw")
        with Ledger.open(pg_url) as ledger:
            summary = LocalRunner(job, text, ledger).run()
            recorded = [e.model_dump_json() for e in ledger.read()]
    assert summary.alerts["read"] == 7
    assert summary.status == "ok"
    assert not any("s3cret-pw" in e for e in recorded)
    assert any("${SKYLEDGER_TEST_KAFKA_PASSWORD}" in e for e in recorded)


def test_a_run_stops_after_max_alerts_or_at_a_time_and_the_next_reads_on(
    kafka_server: EmbeddedKafka, pg_url: str, tmp_path: Path
) -> None:
    bootstrap = kafka_server.bootstrap
    topic = topic_name("stops")
    night = alerts_of(NIGHT)
    publish(bootstrap, topic, night[:60], partitions=1)
    time.sleep(1.5)
    between = time.time()
    time.sleep(1.5)
    publish(bootstrap, topic, night[60:], partitions=1)
    job = tmp_path / "job.yaml"
    job.write_text(job_text(bootstrap, [topic], topic_name("g"), False))

    def run(*options: str) -> dict[str, Any]:
        done = subprocess.run(
            [skyledger(), "run", str(job), "--ledger", pg_url, "--json", *options],
            capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        summary: dict[str, Any] = json.loads(done.stdout)
        return summary

    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(between))
    assert run("--max-alerts", "25")["alerts"]["read"] == 25
    assert run("--until", until)["alerts"]["read"] == 35  # the rest written before then
    assert run()["alerts"]["read"] == len(night) - 60
    with Ledger.open(pg_url) as ledger:
        digests = [a.digest for a in received(ledger)]
    assert digests == [a.digest for a in night]  # once each, in the partition's order

    files = subprocess.run(
        [skyledger(), "run", str(job), "--source", str(NIGHT), "--ledger", pg_url,
         "--max-alerts", "3"],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert files.returncode != 0
    assert "error: --max-alerts and --until stop stream sources (Kafka)" in files.stderr
