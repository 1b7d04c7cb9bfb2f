"""Metrics for Prometheus and a health endpoint, per live process (relay or worker).

``serve(metrics, port)`` answers ``GET /metrics`` (Prometheus text format) and
``GET /healthz``: 200 while the process's loop has gone round within ``stale_s``
seconds, 503 with the reason otherwise (a worker stuck on a dead server, say, or one
batch past the worker's ``--stuck-after``). Each
process has a registry of its own, so several may run in one interpreter (tests).

    skyledger_events_processed_total{tier}   ledger events its projectors read
    skyledger_events_appended_total{tier}    events it appended (new to the ledger)
    skyledger_messages_total{tier,outcome}   bus messages acknowledged / handed back /
                                             deferred (until a T2 retry is due)
    skyledger_failures_total{tier,kind}      errors retried (kind=transient) and units
                                             given up on (kind=unit)
    skyledger_batch_seconds{tier}            time per batch of messages (histogram)
    skyledger_lag_events{tier}               ledger head minus the tier's position
    skyledger_alerts_ingested_total{tier}    alert packets ingested (T0)
    skyledger_deliveries_total{tier,outcome} reactions delivered, or failed (given up on
                                             after the job's retries) (T3)
    skyledger_redeliveries_total{tier}       delivery attempts made again, with the same
                                             key, after one cut without an outcome (T3)
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["LiveMetrics", "MetricsServer", "serve"]


class LiveMetrics:
    """The metrics of one live process (relay or tier worker)."""

    def __init__(self, tier: str, stale_s: float = 60.0) -> None:
        self.tier = tier
        self.stale_s = stale_s
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("skyledger_events_processed", "ledger events read by projectors",
                              ["tier"], registry=r).labels(tier)  # fmt: skip
        self.appended = Counter("skyledger_events_appended", "events appended, new",
                                ["tier"], registry=r).labels(tier)  # fmt: skip
        messages = Counter("skyledger_messages", "bus messages by outcome", ["tier", "outcome"],
                           registry=r)  # fmt: skip
        self.acked = messages.labels(tier, "acknowledged")
        self.handed_back = messages.labels(tier, "handed back")
        self.deferred = messages.labels(tier, "deferred")  # handed back until a retry is due
        failures = Counter("skyledger_failures", "failures by kind", ["tier", "kind"], registry=r)
        self.transient = failures.labels(tier, "transient")
        self.unit_failures = failures.labels(tier, "unit")
        self.batch = Histogram("skyledger_batch_seconds", "time per batch of messages",
                               ["tier"], registry=r).labels(tier)  # fmt: skip
        self.lag = Gauge("skyledger_lag_events", "ledger head minus the tier's position",
                         ["tier"], registry=r).labels(tier)  # fmt: skip
        self.alerts = Counter("skyledger_alerts_ingested", "alert packets ingested", ["tier"],
                              registry=r).labels(tier)  # fmt: skip
        deliveries = Counter("skyledger_deliveries", "reactions delivered or given up on",
                             ["tier", "outcome"], registry=r)  # fmt: skip
        redeliveries = Counter("skyledger_redeliveries",
                               "delivery attempts made again after one cut without an outcome",
                               ["tier"], registry=r).labels(tier)  # fmt: skip
        self.deliveries = {
            "delivered": deliveries.labels(tier, "delivered"),
            "failed": deliveries.labels(tier, "failed"),
            "redelivered": redeliveries,
        }
        self.rounds = Counter("skyledger_rounds", "rounds of the process's loop (it is up and "
                              "pulling work)", ["tier"], registry=r).labels(tier)  # fmt: skip
        self._beat = time.monotonic()
        self.problem = ""
        self._stuck = ""

    def beat(self) -> None:
        """Note that the process's loop went round (it is alive and not stuck)."""
        self._beat = time.monotonic()
        self.rounds.inc()

    def stuck(self, why: str) -> None:
        """Note that the process's work is stuck (unhealthy until :meth:`unstuck`)."""
        self._stuck = why

    def unstuck(self) -> None:
        """Note that the stuck work ended."""
        self._stuck = ""
        self.beat()

    def health(self) -> tuple[bool, str]:
        """Return (healthy, why)."""
        if self._stuck:
            return False, f"stuck: {self._stuck}"
        age = time.monotonic() - self._beat
        if age > self.stale_s:
            why = f": {self.problem}" if self.problem else ""
            return False, f"no progress for {age:.0f} s{why}"
        return True, f"ok ({self.tier}, last round {age:.1f} s ago)"

    def text(self) -> bytes:
        """Return the metrics in Prometheus text format."""
        data: bytes = generate_latest(self.registry)
        return data


class MetricsServer(ThreadingHTTPServer):
    """Serves /metrics and /healthz for one process, on a thread."""

    daemon_threads = True

    def __init__(self, metrics: LiveMetrics, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)
        self.metrics = metrics
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Return the base URL."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        """Stop serving."""
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        if self.path.startswith("/metrics"):
            self._send(200, self.server.metrics.text(), CONTENT_TYPE_LATEST)
        elif self.path.startswith("/healthz"):
            ok, why = self.server.metrics.health()
            self._send(200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8")
        else:
            self._send(404, b"try /metrics or /healthz\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not news."""


def serve(metrics: LiveMetrics, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve a process's metrics and health on ``host:port`` (0: a free port)."""
    server = MetricsServer(metrics, host, port)
    server.thread.start()
    return server
