"""A live process's /metrics (Prometheus text) and /healthz, served on a real port."""

from __future__ import annotations

import pytest

from skyledger.runners.metrics import LiveMetrics, serve
from tests.runners.live_kit import get


def test_metrics_and_health_are_served() -> None:
    metrics = LiveMetrics("t2", stale_s=30)
    metrics.events.inc(12)
    metrics.appended.inc(5)
    metrics.unit_failures.inc()
    metrics.batch.observe(0.25)
    metrics.lag.set(40)
    metrics.deliveries["redelivered"].inc()
    metrics.beat()
    metrics.beat()
    server = serve(metrics, 0)
    try:
        code, text = get(server.url + "/metrics")
        assert code == 200
        assert 'skyledger_events_processed_total{tier="t2"} 12.0' in text
        assert 'skyledger_events_appended_total{tier="t2"} 5.0' in text
        assert 'skyledger_failures_total{kind="unit",tier="t2"} 1.0' in text
        assert 'skyledger_lag_events{tier="t2"} 40.0' in text
        assert 'skyledger_batch_seconds_count{tier="t2"} 1.0' in text
        assert 'skyledger_redeliveries_total{tier="t2"} 1.0' in text
        assert 'skyledger_rounds_total{tier="t2"} 2.0' in text
        assert 'skyledger_deliveries_total{outcome="delivered",tier="t2"} 0.0' in text
        code, text = get(server.url + "/healthz")
        assert (code, text.split()[0]) == (200, "ok")
        assert get(server.url + "/elsewhere")[0] == 404
    finally:
        server.close()


def test_a_process_that_stopped_going_round_is_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("skyledger.runners.metrics.time.monotonic", lambda: now[0])
    metrics = LiveMetrics("t1", stale_s=5)
    metrics.beat()
    metrics.problem = "LedgerError: connection refused"
    server = serve(metrics, 0)
    try:
        now[0] += 60  # a minute without a round of the process's loop
        code, text = get(server.url + "/healthz")
        assert code == 503
        assert "no progress for 60 s: LedgerError: connection refused" in text
    finally:
        server.close()


def test_stuck_work_is_unhealthy_at_once_and_healthy_again_when_it_ends() -> None:
    metrics = LiveMetrics("t2", stale_s=60)
    metrics.beat()
    why = "one batch has run for 900 s (more than --stuck-after)"
    metrics.stuck(why)
    assert metrics.health() == (False, f"stuck: {why}")
    metrics.unstuck()
    healthy, now = metrics.health()
    assert healthy, now
