"""Beyond one machine: a T2 worker on a second host (a network namespace of its own, a
veth pair to the first) against NATS and PostgreSQL on the first; its link is cut
mid-stream. Its unacknowledged work goes to the T2 worker on the first host (JetStream
redelivers, PostgreSQL ends the vanished session and so frees its claims), nothing is
lost, and when the link returns it rejoins and works again. Traffic stays inside the
two namespaces (the veth pair and loopback). Needs root, as CI has; skipped with the
reason elsewhere (marker ``privileged``)."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.runners.pipeline_units  # noqa: F401  (registers the test units here)
from skyledger.ledger import Ledger
from skyledger.runners.bus import Bus
from skyledger.runners.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from skyledger.runners.job import parse_job
from skyledger.runners.live import LiveProcesses, publish_packets, settle, stop_stuck
from skyledger.runners.local import LocalRunner
from skyledger.runners.simulate import SimulatedSource
from skyledger.units import Alert
from tests.runners.live_kit import MemorySource, differences, facts

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.privileged]

ROOT = Path(__file__).resolve().parents[2]
NIGHT = ROOT / "tests" / "data" / "ztf" / "night"
SHARDS = 8
ALERTS = 1200
ACK_WAIT_S = 3

JOB = """\
name: two-hosts
channels:
  - name: ALL
combiner: {unit: AllPoints}
t2:
  - unit: Busy
    config: {rounds: 60000}
  - unit: CountPoints
"""


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def second_host() -> Iterator[tuple[str, str, str, str]]:
    """Make a network namespace joined to this one by a veth pair; yield (namespace,
    this side's interface, this side's address, the namespace's address)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (`ip netns`) to make a second host")
    n = random.randrange(1, 250)
    ns, here, there = f"sl-host2-{n}", f"slv{n}a", f"slv{n}b"
    near, far = f"10.213.{n}.1", f"10.213.{n}.2"
    try:
        _run("ip", "netns", "add", ns)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot make a network namespace here: {exc.stderr.strip()}")
    try:
        _run("ip", "link", "add", here, "type", "veth", "peer", "name", there)
        _run("ip", "link", "set", there, "netns", ns)
        _run("ip", "addr", "add", f"{near}/24", "dev", here)
        _run("ip", "link", "set", here, "up")
        _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{far}/24", "dev", there)
        _run("ip", "netns", "exec", ns, "ip", "link", "set", there, "up")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns, here, near, far
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", here], capture_output=True, timeout=30)


def metric(url: str, prefix: str) -> float:
    """Return the sum of a worker's metrics whose lines start with ``prefix`` (0 while its
    /metrics does not answer)."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix))  # fmt: skip


def processed(url: str) -> float:
    """Return the ledger events a worker's projectors read, from its /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("skyledger_events_processed_total{")
    )


def test_a_t2_worker_on_a_second_host_cut_off_mid_stream_loses_nothing_and_rejoins(
    tmp_path: Path, second_host: tuple[str, str, str, str]
) -> None:
    ns, here, near, far = second_host
    source = SimulatedSource({"paths": [str(NIGHT)], "copies": 2, "cutouts": False})
    alerts = [p for p in itertools.islice(source.packets(), ALERTS * 2) if isinstance(p, Alert)]
    alerts = alerts[:ALERTS]
    assert len(alerts) == ALERTS
    MemorySource.alerts = alerts
    with Ledger.open(f"sqlite:///{tmp_path}/local.sqlite") as local:
        LocalRunner(parse_job(JOB), JOB, local, [MemorySource({"paths": ["-"]})],
                    read_model=False).run()  # fmt: skip
        expected = facts(local)
    job_path = tmp_path / "job.yaml"
    job_path.write_text(JOB)
    (tmp_path / "logs").mkdir()
    args = ["--ack-wait", str(ACK_WAIT_S), "--import", "tests.runners.pipeline_units"]
    with EmbeddedPostgres(fsync=False, also_listen=near) as pg, EmbeddedNats(listen=near) as nats:
        url = pg.create_database("hosts").replace("127.0.0.1", near)
        bus = Bus(nats.url, prefix="hosts", shards=SHARDS)
        workers = {"t0": 1, "t1": 1, "t2": 1, "t3": 1}
        with (
            Ledger.open(url) as ledger,
            LiveProcesses(str(job_path), url, bus, workers, str(tmp_path / "logs"),
                          worker_args=args, metrics=True) as procs,
        ):  # fmt: skip
            procs.start_all()
            port = free_port()
            remote = [
                "ip", "netns", "exec", ns,
                *procs.command("t2#remote"), "--metrics-port", str(port),
                "--metrics-host", far,
            ]  # fmt: skip
            with (tmp_path / "logs" / "t2-remote.log").open("wb") as log:
                host2 = subprocess.Popen(remote, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=ROOT, start_new_session=True)  # fmt: skip
            try:
                remote_url = f"http://{far}:{port}"
                # The stream starts once the second host's worker pulls (however long a
                # loaded machine takes to start it), so it gets a share of the work.
                # A guard, not a pace: a worker alive that never answers fails, not hangs.
                guard = time.monotonic() + 600
                while metric(remote_url, "skyledger_rounds_total{") == 0:
                    assert host2.poll() is None, "the second host's worker died starting"
                    assert time.monotonic() < guard, "the second host's worker never pulled"
                    time.sleep(0.2)
                publisher = threading.Thread(
                    target=lambda: asyncio.run(
                        publish_packets(bus, [a.packet for a in alerts[:800]], rate=80)
                    ),
                    daemon=True,
                )
                publisher.start()
                while processed_or_zero(remote_url) == 0:  # the second host takes part
                    assert host2.poll() is None, "the second host's worker died"
                    if not publisher.is_alive():  # all sent: it must get some before the end
                        settle(ledger, bus, parse_job(JOB), SHARDS, timeout_s=120,
                               alive=procs.check)  # fmt: skip
                        assert processed_or_zero(remote_url) > 0, "the second host got no work"
                    time.sleep(0.5)
                _run("ip", "link", "set", here, "down")  # the cable is cut
                cut = time.monotonic()
                # Its work moves over: JetStream redelivers what it held after --ack-wait,
                # and PostgreSQL ends its vanished sessions (keepalives), freeing its claims.
                while time.monotonic() - cut < ACK_WAIT_S or sessions_from(pg, far):
                    assert time.monotonic() - cut < 90, "PostgreSQL kept the cut-off sessions"
                    time.sleep(0.2)
                _run("ip", "link", "set", here, "up")
                publisher.join()
                before = processed_or_zero(remote_url, wait_s=60)
                # The first host's T2 worker leaves: the rest is the second host's to do.
                procs.kill("t2#0", signal.SIGTERM)
                asyncio.run(publish_packets(bus, [a.packet for a in alerts[800:]], rate=100))
                del procs.procs["t2#0"]  # stopped on purpose: not a death to report
                settle(ledger, bus, parse_job(JOB), SHARDS, timeout_s=300, alive=procs.check)
                after = processed_or_zero(remote_url, wait_s=30)
                assert host2.poll() is None, "the second host's worker died"
                found = facts(ledger)
            finally:
                host2.terminate()
                try:
                    code = host2.wait(60)
                except subprocess.TimeoutExpired:  # its stacks to its log, then a kill
                    code = stop_stuck(host2)
    only_live, only_local = differences(found, expected)
    assert not only_live, only_live
    assert not only_local, only_local
    assert after > before  # it rejoined: it read events after the link came back
    assert code == 0


def sessions_from(pg: EmbeddedPostgres, address: str) -> int:
    """Return how many sessions PostgreSQL holds for clients at ``address``."""
    import psycopg

    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE client_addr = %s", [address]
        ).fetchone()
    return int(row[0]) if row else 0


def processed_or_zero(url: str, wait_s: float = 0.0) -> float:
    """Return a worker's events processed, waiting up to ``wait_s`` for it to answer."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return processed(url)
        except OSError:
            if time.monotonic() >= deadline:
                return 0.0
            time.sleep(0.5)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
