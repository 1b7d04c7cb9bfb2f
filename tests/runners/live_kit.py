"""What the live-mode tests share: an HTTP receiver counting idempotency keys, packets
held in memory as a source, and the facts of a ledger (its events but the records of
runs, workers and delivery attempts)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar, TypeVar

from skyledger.ledger import (
    ConfigurationRegistered,
    DeliveryClaimed,
    Event,
    Ledger,
    ReactionIssued,
    RunFinished,
    RunHeartbeat,
    RunStarted,
)
from skyledger.runners.simulate import SimulatedSource
from skyledger.units import Alert, Blob

S = TypeVar("S", bound=HTTPServer)


class Keys(HTTPServer):
    """An HTTP receiver on 127.0.0.1 that counts the Idempotency-Key of every POST and
    answers 200; served on a thread by :func:`serving`."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.keys: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        """Return the URL webhooks post to."""
        return f"http://127.0.0.1:{self.server_port}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Keys
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.keys[self.headers.get("Idempotency-Key", "")] += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test's output clean."""


def serving() -> Iterator[Keys]:
    """Serve a :class:`Keys` receiver on a thread for as long as the generator lives
    (a fixture's body)."""
    yield from serve(Keys())


def serve(server: S) -> Iterator[S]:
    """Serve an HTTP server on a thread for as long as the generator lives."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(30)
        server.server_close()


class MemorySource(SimulatedSource):
    """Packets made beforehand (``alerts``), read as blobs, as the live workers get them."""

    alerts: ClassVar[list[Alert]] = []

    def packets(self) -> Iterator[Alert]:  # type: ignore[override]
        return iter(self.alerts)

    def blobs(self, start: int = 0) -> Iterator[Blob] | None:  # type: ignore[override]
        return (Blob(a.packet, a.locator) for a in self.alerts[start:])


def run_record(event: Event, deliveries: bool = False) -> bool:
    """Return True for records of runs and workers, not facts: the sources'
    configurations (which files a run read), RunStarted, RunHeartbeat and RunFinished; and, unless
    ``deliveries``, delivery claims and outcomes (a delivery cut short by a crash is
    tried again, with the same key, as another attempt)."""
    if isinstance(event, ConfigurationRegistered):
        return event.unit.endswith("Source")
    if not deliveries and isinstance(event, DeliveryClaimed | ReactionIssued):
        return True
    return isinstance(event, RunStarted | RunHeartbeat | RunFinished)


def facts(ledger: Ledger, deliveries: bool = False) -> dict[str, str]:
    """Return the id and type name of every fact in a ledger (delivery attempts too, if
    ``deliveries``)."""
    return {e.id: type(e).__name__ for e in ledger.read() if not run_record(e, deliveries)}


def differences(found: dict[str, str], expected: dict[str, str]) -> tuple[Counter[str], ...]:
    """Return the types of the facts only in ``found`` and only in ``expected``."""
    return (
        Counter(found[i] for i in set(found) - set(expected)),
        Counter(expected[i] for i in set(expected) - set(found)),
    )


def get(url: str) -> tuple[int, str]:
    """Return the status and text of a GET (an error status too; 0 if none answered)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:  # not listening (yet)
        return 0, str(exc)
