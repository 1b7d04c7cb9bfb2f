"""The report and webhook reactors on real candidates: ranking, keys, files and HTTP."""

from __future__ import annotations

import base64
import gc
import json
import re
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from skyledger.ledger.errors import ConfigError, UnitError
from skyledger.units.t3 import ReportReactor, WebhookReactor
from skyledger.units.views import StockSummary
from tests.units.science import SN, candidates

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stocks(shared_data: Path) -> tuple[StockSummary, ...]:
    """Return five real candidates (ZTF21abiuvdk and four night stocks) with their results."""
    return candidates(shared_data)


def _score(stock: StockSummary) -> float:
    return float(stock.results["T2CandidateScore"]["score"])


def test_report_ranks_by_score_in_one_reaction(
    tmp_path: Path, stocks: tuple[StockSummary, ...]
) -> None:
    path = tmp_path / "report.html"
    reactor = ReportReactor({"path": str(path)})
    (reaction,) = reactor.react(stocks)
    assert reaction.target == str(path)
    assert reaction.stock is None
    payload = reaction.payload
    assert payload["format"] == "html"
    entries = payload["stocks"]
    expected = sorted(stocks, key=lambda s: (-_score(s), s.stock))
    assert [e["stock"] for e in entries] == [s.stock for s in expected]
    assert [e["rank"] for e in entries] == list(range(1, len(stocks) + 1))
    assert entries[0]["stock"] == SN  # the bright supernova comes first
    json.dumps(payload, allow_nan=False)
    # the key depends on the stocks and their results, not on their order
    assert reactor.react(stocks[::-1])[0].key == reaction.key
    changed = replace(stocks[1], results={**stocks[1].results, "T2CandidateScore": {"score": 0.0}})
    assert reactor.react([stocks[0], changed, *stocks[2:]])[0].key != reaction.key
    assert ReportReactor({"path": "other.html"}).react(stocks)[0].key != reaction.key


def test_report_selection_options(stocks: tuple[StockSummary, ...]) -> None:
    assert ReportReactor().react([]) == []
    top = ReportReactor({"limit": 2}).react(stocks)[0].payload["stocks"]
    assert len(top) == 2
    threshold = sorted(_score(s) for s in stocks)[2]
    kept = ReportReactor({"min_value": threshold}).react(stocks)[0].payload["stocks"]
    assert {e["stock"] for e in kept} == {s.stock for s in stocks if _score(s) >= threshold}
    lowest = ReportReactor({"descending": False}).react(stocks)[0].payload["stocks"][0]
    assert lowest["value"] == min(_score(s) for s in stocks)
    assert ReportReactor({"min_value": 2.0}).react(stocks) == []
    with pytest.raises(ConfigError, match="rank_by"):
        ReportReactor({"rank_by": "score"})


def test_a_report_reads_its_selection_once_keeping_only_its_top(
    stocks: tuple[StockSummary, ...],
) -> None:
    class Tracked(StockSummary):  # without slots: it can be watched
        pass

    alive: list[weakref.ref[StockSummary]] = []

    most = 0

    def selection() -> Iterator[StockSummary]:  # as T3 hands a pass's stocks over
        nonlocal most
        for stock in stocks:
            gc.collect()
            most = max(most, sum(1 for ref in alive if ref() is not None))
            copy = Tracked(**{f.name: getattr(stock, f.name) for f in fields(stock)})
            alive.append(weakref.ref(copy))
            yield copy

    (reaction,) = ReportReactor({"limit": 2}).react(selection())
    assert reaction.payload == ReportReactor({"limit": 2}).react(stocks)[0].payload
    assert len(stocks) == 5
    assert most <= 3, f"{most} stocks held while reading: a report keeps its top 2 (and one)"


def test_report_file_has_one_plot_per_candidate_and_is_reproducible(
    tmp_path: Path, stocks: tuple[StockSummary, ...]
) -> None:
    path = tmp_path / "out" / "report.html"
    reactor = ReportReactor({"path": str(path), "markdown": True})
    (reaction,) = reactor.react(stocks)
    detail = reactor.deliver(reaction)
    assert detail == f"wrote {len(stocks)} candidates to {path} and {path.with_suffix('.md')}"
    page = path.read_text("utf-8")
    images = re.findall(
        r'<img alt="light curve of ([^"]+)" src="data:image/png;base64,([^"]+)"', page
    )
    assert [stock for stock, _ in images] == [e["stock"] for e in reaction.payload["stocks"]]
    assert all(base64.b64decode(data).startswith(PNG_MAGIC) for _, data in images)
    assert "<a " not in page  # link-free
    assert page.count("<table>") == sum(
        1 for s in stocks if s.results["T2LightCurveFeatures"]["per_band"]
    )
    assert "g-r = 0.38 mag" in page  # ZTF21abiuvdk's colour near peak
    first = path.read_bytes()
    markdown = path.with_suffix(".md").read_bytes()
    reactor.deliver(reaction)  # again: byte-identical
    assert path.read_bytes() == first
    assert path.with_suffix(".md").read_bytes() == markdown
    again = ReportReactor({"path": str(tmp_path / "again.html")})
    again.deliver(again.react(stocks)[0])
    assert (tmp_path / "again.html").read_bytes() == first
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "report.html",
        "report.md",
    ]  # no temp files left


@dataclass
class _Seen:
    """What the test server received, and what it should answer."""

    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[tuple[str, _Seen]]:
    """Serve on 127.0.0.1 (a free port): /ok answers 200, /fail 500, /moved a redirect."""
    seen = _Seen()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            seen.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)}
            )
            status, body = {"/ok": (200, b'{"ok": true}'), "/fail": (500, b"database is down")}.get(
                self.path, (302, b"")
            )
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/ok")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_webhook_posts_json_with_the_idempotency_key(
    server: tuple[str, _Seen], stocks: tuple[StockSummary, ...]
) -> None:
    base, seen = server
    reactor = WebhookReactor({"url": f"{base}/ok", "timeout_seconds": 5})
    reactions = reactor.react(stocks)
    assert [r.stock for r in reactions] == sorted(s.stock for s in stocks)
    assert len({r.key for r in reactions}) == len(stocks)
    sn = next(r for r in reactions if r.stock == SN)
    assert reactor.deliver(sn) == f"POST {base}/ok: 200"
    (request,) = seen.requests
    assert request["headers"]["Idempotency-Key"] == sn.key
    assert request["headers"]["Content-Type"] == "application/json"
    body = json.loads(request["body"])
    assert body == json.loads(json.dumps(dict(sn.payload)))
    assert body["stock"] == SN
    assert body["summary"]["ndet"] == 34
    assert set(body["results"]) == {"T2CandidateScore", "T2LightCurveFeatures"}
    assert reactor.react(stocks)[0].key == reactions[0].key  # same content, same key


def test_webhook_failures_raise(
    server: tuple[str, _Seen], stocks: tuple[StockSummary, ...]
) -> None:
    base, seen = server
    failing = WebhookReactor({"url": f"{base}/fail"})
    with pytest.raises(UnitError, match="answered 500: 'database is down'"):
        failing.deliver(failing.react(stocks)[0])
    moved = WebhookReactor({"url": f"{base}/moved"})
    with pytest.raises(UnitError, match="answered 302"):
        moved.deliver(moved.react(stocks)[0])
    assert [r["path"] for r in seen.requests] == [
        "/fail",
        "/moved",
    ]  # the redirect was not followed
    closed = WebhookReactor({"url": "http://127.0.0.1:9/", "timeout_seconds": 2})
    with pytest.raises(UnitError, match="failed"):
        closed.deliver(closed.react(stocks)[0])


def test_webhook_selection_and_options(stocks: tuple[StockSummary, ...]) -> None:
    url = "http://127.0.0.1:1/hook"
    best = max(_score(s) for s in stocks)
    picked = WebhookReactor({"url": url, "min_value": best}).react(stocks)
    assert {r.stock for r in picked} == {s.stock for s in stocks if _score(s) >= best}
    only = WebhookReactor({"url": url, "results": ["T2CandidateScore"]}).react(stocks)
    assert all(set(r.payload["results"]) <= {"T2CandidateScore"} for r in only)
    assert only[0].key != WebhookReactor({"url": url}).react(stocks)[0].key
    with pytest.raises(ConfigError, match="url"):
        WebhookReactor({"url": "ftp://example.org/x"})
