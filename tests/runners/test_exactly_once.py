"""Webhook reactions survive a SIGKILL right after delivery: at most twice, one key, one outcome.

T3 reactions go through an outbox (``projections.outbox``): an intent is recorded, each
attempt is claimed, delivered with the intent's ``Idempotency-Key`` and its outcome
recorded. A process that dies between the delivery and its outcome leaves a claim
without an outcome, which the next run takes over (after ``retry.lease_s``) and delivers
again under the same key. This is checked end to end, with no mocks: the installed
``skyledger run`` in a real subprocess, a real HTTP receiver on 127.0.0.1, and a real
SIGKILL sent by the receiver on the first POST, after reading it and before answering
(the delivery reached the receiver, the runner can never record its outcome). The
same command is then run again and must finish cleanly; the receiver must have seen
every key at most twice (the killed one exactly twice, same key, same body), and only
keys the ledger holds as intents; the ledger must hold one delivered outcome per intent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from skyledger.ledger import DeliveryClaimed, Event, Ledger, ReactionIntended, ReactionIssued

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data" / "ztf" / "ZTF21abiuvdk"
TIMEOUT_S = 300.0  # the longest any wait here may take before the test fails

JOB = """\
name: exactly-once
channels:
  - name: ALL
combiner: {{unit: LightCurveCombiner}}
t2:
  - unit: T2LightCurveFeatures
    config: {{bazin: false}}
t3:
  - unit: WebhookReactor
    config: {{url: "{url}"}}
retry: {{max_attempts: 2, backoff_s: 0, lease_s: 0.5}}
"""


@dataclass(frozen=True)
class Post:
    """One POST the receiver got: its Idempotency-Key header and its body."""

    key: str
    body: bytes


class Receiver(HTTPServer):
    """An HTTP receiver that records every POST, and on the first one SIGKILLs the
    runner (set with :meth:`arm`) before answering; later POSTs are answered 200."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.posts: list[Post] = []
        self.runner: subprocess.Popen[bytes] | None = None
        self.armed = threading.Event()
        self.killing = threading.Event()  # set before the SIGKILL is sent
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        """Return the URL the webhook posts to."""
        return f"http://127.0.0.1:{self.server_port}/hook"

    def arm(self, runner: subprocess.Popen[bytes]) -> None:
        """Name the process to kill on the first POST."""
        self.runner = runner
        self.armed.set()

    def record(self, post: Post) -> bool:
        """Record a POST; return True if it is the first one."""
        with self.lock:
            self.posts.append(post)
            return len(self.posts) == 1

    def kill_runner(self) -> None:
        """SIGKILL the armed runner and wait until it is gone (it never gets an answer)."""
        if not self.armed.wait(TIMEOUT_S) or self.runner is None:
            raise RuntimeError("a POST came before the runner was started")
        self.killing.set()
        os.kill(self.runner.pid, signal.SIGKILL)
        self.runner.wait(TIMEOUT_S)

    def seen(self) -> list[Post]:
        """Return the POSTs received so far, in order."""
        with self.lock:
            return list(self.posts)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.record(Post(self.headers.get("Idempotency-Key", ""), body)):
            self.server.kill_runner()
            self.close_connection = True
            return  # closed without an answer: the runner is dead by now
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test's output clean."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Serve a :class:`Receiver` on a thread for the test's duration."""
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(TIMEOUT_S)
        server.server_close()


def run_command(job: Path, url: str) -> list[str]:
    """Return the installed ``skyledger run`` command of the job over the test alerts."""
    script = shutil.which("skyledger", path=str(Path(sys.executable).parent))
    assert script, "the skyledger console script is installed with the package"
    return [script, "run", str(job), "--source", str(DATA), "--ledger", url, "--json"]


def child_env() -> dict[str, str]:
    """Return the environment of the runs: the receiver is never reached through a proxy."""
    return dict(os.environ, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")


def run_until_killed(command: list[str], cwd: Path, receiver: Receiver) -> None:
    """Run the command and check that the receiver killed it on its first POST."""
    log = cwd / "killed-run.log"
    with log.open("wb") as out:
        runner = subprocess.Popen(
            command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=child_env()
        )
        try:
            receiver.arm(runner)
            code = runner.wait(TIMEOUT_S)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
    assert receiver.killing.is_set(), f"the run ended ({code}) without a POST:\n{log.read_text()}"
    assert code == -signal.SIGKILL


def run_to_the_end(command: list[str], cwd: Path) -> dict[str, Any]:
    """Run the command to its end; return its JSON summary."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, timeout=TIMEOUT_S, env=child_env())
    assert done.returncode == 0, done.stderr.decode()
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def reactions(url: str) -> dict[str, tuple[ReactionIntended, list[Event]]]:
    """Return, by key, every intent in the ledger and the events of its stream."""
    with Ledger.open(url) as ledger:
        intents = list(ledger.read(types=[ReactionIntended]))
        return {
            i.idempotency_key: (i, list(ledger.stream(f"reaction:{i.idempotency_key}")))
            for i in intents
            if isinstance(i, ReactionIntended)
        }


def attempts(stream: list[Event], kind: type[DeliveryClaimed | ReactionIssued]) -> list[int]:
    """Return the attempt numbers of a reaction stream's events of one kind, in order."""
    return [e.attempt for e in stream if isinstance(e, kind)]


def delivered(stream: list[Event]) -> list[ReactionIssued]:
    """Return a reaction stream's delivered outcomes."""
    return [e for e in stream if isinstance(e, ReactionIssued) and e.outcome == "delivered"]


@pytest.mark.slow
def test_a_delivery_killed_before_its_outcome_is_posted_again_once_with_the_same_key(
    tmp_path: Path, ledger_url: str, receiver: Receiver
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(JOB.format(url=receiver.url))
    command = run_command(job, ledger_url)

    run_until_killed(command, tmp_path, receiver)
    summary = run_to_the_end(command, tmp_path)
    assert summary["status"] == "ok", summary["failures"]
    [webhook] = summary["reactions"]
    assert webhook["taken_over"] == 1
    assert webhook["redelivered"] == 1  # counted: the receiver got the killed key twice

    posts = receiver.seen()
    per_key = Counter(p.key for p in posts)
    killed = posts[0]
    # (1) every key at most twice; the killed one twice, same key and body.
    assert max(per_key.values()) <= 2, per_key
    assert per_key[killed.key] == 2
    assert [p.body for p in posts if p.key == killed.key] == [killed.body, killed.body]
    # (2) only keys of intents were posted, each with its intent's payload.
    held = reactions(ledger_url)
    assert set(per_key) <= set(held)
    for post in posts:
        assert json.loads(post.body) == held[post.key][0].payload
    # (3) one delivered outcome per intent; the killed one delivered by the takeover.
    for key, (_, stream) in held.items():
        assert len(delivered(stream)) == 1, key
    _, killed_stream = held[killed.key]
    assert attempts(killed_stream, DeliveryClaimed) == [1, 2]
    assert attempts(killed_stream, ReactionIssued) == [2]
    assert delivered(killed_stream)[0].attempt == 2
    # (4) every intent reached the receiver.
    assert len(per_key) == len(held) > 1
