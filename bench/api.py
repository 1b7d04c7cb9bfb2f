"""The HTTP API under load, beside the same queries answered in-process (the ceiling).

    python bench/api.py [--stocks 100000] [--small 10000] [--concurrency 8]
                        [--seconds 10] [--night PATH]

Two ledgers on PostgreSQL are made from the real ZTF night (``../shared/data/ztf/night``,
or ``--night``), replayed by the simulator as new stocks spread over the sky (each copy
moved in right ascension): one of ``--small`` stocks and one of ``--stocks``. Each holds
a channel that follows every stock, a state per alert and two T2 entries (light-curve
features without Bazin fits, and the candidate score on them); its read model is built.
A reader of the channel gets a personal access token.

Three queries are timed, each with its parameters drawn at random from the ledger's own
stocks: a stock's view (``GET /api/v1/stocks/{id}``), the channel's candidates ranked by
score (``GET /api/v1/results?entry=T2CandidateScore&path=score&latest=true&limit=50``) and
a cone search of 60 arcseconds around a stock (``GET /api/v1/stocks?ra&dec&radius``).

* In-process (the ceiling): the query layer called directly, one at a time, with the
  same scope as the API gives the token: queries per second.
* HTTP: ``skyledger serve`` (one process) on loopback, a load generator (asyncio, httpx)
  holding ``--concurrency`` requests in flight for ``--seconds``: requests per second
  (the capacity) and latencies; then the same requests paced at half that capacity:
  their p99 latency.

The last line::

    RESULT stock_rps=... list_rps=... cone_rps=... p99_ms=... http_ratio=... growth=...

``*_rps``: HTTP capacity at ``--stocks``; ``p99_ms``: the worst of the three p99s at half
capacity; ``http_ratio``: HTTP over in-process rate for the stock view; ``growth``: the
cone search's in-process time at ``--stocks`` over its time at ``--small``. Targets: p99
under 50 ms at half capacity, ``http_ratio`` at least 0.3, ``growth`` at most 2.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from skyledger.ledger import Ledger
from skyledger.ledger.access import AccessGranted, TokenIssued
from skyledger.projections.access import make_token, token_digest
from skyledger.projections.listing import ResultQuery, StockQuery, list_results, list_stocks
from skyledger.projections.queries import stock_view
from skyledger.projections.readmodel import ReadModel, readmodel_url
from skyledger.projections.scope import Scope
from skyledger.projections.visibility import scoped_view
from skyledger.runners.embedded import EmbeddedPostgres
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.runners.simulate import SimulatedSource
from skyledger.units import Alert

NIGHT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ztf" / "night"
ROOT = Path(__file__).resolve().parents[1]
P99_TARGET_MS, RATIO_TARGET, GROWTH_TARGET = 50.0, 0.3, 2.0
CONE_ARCSEC = 60.0
JOB = """
name: bench-api
channels: [{name: ALL}]
combiner: {unit: LightCurveCombiner}
t2:
  - {unit: T2LightCurveFeatures, config: {bazin: false}}
  - unit: T2CandidateScore
"""
RANKED = {"entry": "T2CandidateScore", "path": "score", "latest": True, "channel": "ALL"}


class Limited(SimulatedSource):
    """The simulated stream cut after ``limit`` alerts."""

    limit = 0

    def packets(self) -> Any:  # type: ignore[override]
        n = 0
        for packet in super().packets():
            if isinstance(packet, Alert):
                yield packet
                n += 1
                if n >= self.limit:
                    return

    def blobs(self, start: int = 0) -> None:  # type: ignore[override]
        return None  # decoded alerts, not bytes: the simulator made them


def build(url: str, night: Path, stocks: int) -> tuple[str, list[tuple[str, float, float]]]:
    """Fill a ledger with ``stocks`` stocks through T2, build its read model, grant the
    channel to a reader; return the reader's token and the stocks' ids and positions."""
    originals = sum(1 for p in SimulatedSource({"paths": [str(night)]}).packets()
                    if isinstance(p, Alert))  # fmt: skip
    Limited.limit = stocks
    source = Limited({"paths": [str(night)], "copies": math.ceil(stocks / originals) + 1,
                      "sky_step_deg": 137.50776405003785})  # fmt: skip
    started = time.perf_counter()
    with Ledger.open(url) as ledger:
        summary = LocalRunner(parse_job(JOB), JOB, ledger, [source], read_model=False,
                              workers=2).run()  # fmt: skip
        token, token_id = make_token()
        ledger.append([
            AccessGranted(stream="access:ALL", channel="ALL", member="user:bench", by="bench"),
            TokenIssued(stream=f"token:{token_id}", token_id=token_id, owner="user:bench",
                        digest=token_digest(token), expires="2999-01-01T00:00:00Z",
                        by="bench"),
        ])  # fmt: skip
        ran = time.perf_counter() - started
        with ReadModel(readmodel_url(url)) as model:
            model.create()
            model.catch_up(ledger)
            placed = placed_stocks(model)
    print(f"  {summary.alerts['read']:,} alerts, {len(placed):,} stocks placed: run "
          f"{ran:.0f} s, read model {time.perf_counter() - started - ran:.0f} s", flush=True)
    return token, placed


def placed_stocks(model: ReadModel) -> list[tuple[str, float, float]]:
    from sqlalchemy import select

    from skyledger.projections import models as m

    with model.engine.connect() as conn:
        rows = conn.execute(select(m.Stock.stock, m.Stock.ra, m.Stock.dec)
                            .where(m.Stock.ra.is_not(None))).all()  # fmt: skip
    return [(s, float(ra), float(dec)) for s, ra, dec in rows]


@dataclass
class Queries:
    """The three queries, as HTTP requests and as in-process calls, drawn at random."""

    stocks: list[tuple[str, float, float]]
    rng: random.Random

    def stock(self) -> str:
        return self.rng.choice(self.stocks)[0]

    def cone(self) -> tuple[float, float]:
        _, ra, dec = self.rng.choice(self.stocks)
        return ra, dec

    def http(self, kind: str) -> tuple[str, dict[str, Any]]:
        if kind == "stock":
            return f"/api/v1/stocks/{self.stock()}", {}
        if kind == "list":
            return "/api/v1/results", {"limit": 50} | {k: str(v).lower() if isinstance(v, bool)
                                                       else v for k, v in RANKED.items()}
        ra, dec = self.cone()
        return "/api/v1/stocks", {"ra": ra, "dec": dec, "radius": CONE_ARCSEC}


def cone_query(q: Queries) -> StockQuery:
    ra, dec = q.cone()
    return StockQuery.parse({"ra": ra, "dec": dec, "radius_arcsec": CONE_ARCSEC})


def in_process(model: ReadModel, ledger: Ledger, q: Queries, kind: str, seconds: float) -> float:
    """Return the in-process rate of one query (one at a time, for ``seconds``)."""
    scope = Scope(channels=frozenset({"ALL"}))
    calls: dict[str, Callable[[], Any]] = {
        "stock": lambda: scoped_view(model, stock_view(model, q.stock()), scope),  # type: ignore[arg-type]
        "list": lambda: list_results(
            model, ResultQuery.parse(dict(RANKED)), scope=scope, limit=50
        ),
        "cone": lambda: list_stocks(model, ledger, cone_query(q), scope=scope),
    }
    call = calls[kind]
    call()  # warm: imports, caches
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call()
        done += 1
    return done / (time.perf_counter() - started)


async def load(base: str, token: str, q: Queries, kind: str, concurrency: int, seconds: float,
               rate: float | None = None) -> tuple[float, list[float]]:  # fmt: skip
    """Return requests per second and latencies (ms): ``concurrency`` requests in flight
    for ``seconds`` or, with ``rate``, requests started at that rate (open loop)."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency * 4)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60,
                                 limits=limits) as client:  # fmt: skip

        async def one() -> None:
            path, params = q.http(kind)
            started = time.perf_counter()
            answer = await client.get(path, params=params)
            if answer.status_code != 200:
                raise SystemExit(f"{kind}: {answer.status_code} {answer.text[:300]}")
            latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        if rate is None:
            async def worker() -> None:
                while time.perf_counter() - started < seconds:
                    await one()

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:
            tasks = []
            n = 0
            while (now := time.perf_counter() - started) < seconds:
                due = n / rate
                if due > now:
                    await asyncio.sleep(due - now)
                tasks.append(asyncio.create_task(one()))
                n += 1
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else latencies[0]


def serve(url: str) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "skyledger.runners.cli", "serve", "--ledger", url,
         "--port", str(port),
         "--rate", "1000000", "--burst", "1000000"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(base + "/api/v1/health", timeout=5).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("skyledger serve did not start")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stocks", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--night", type=Path, default=NIGHT)
    args = parser.parse_args()
    os.environ.setdefault("SKYLEDGER_LOCK_TIMEOUT_S", "30")
    kinds = ("stock", "list", "cone")
    with EmbeddedPostgres() as server, tempfile.TemporaryDirectory():
        ceilings: dict[int, dict[str, float]] = {}
        for size in (args.small, args.stocks):
            print(f"ledger of {size:,} stocks:", flush=True)
            url = server.create_database(f"api{size}")
            token, placed = build(url, args.night, size)
            q = Queries(placed, random.Random(size))
            with Ledger.open(url, create=False) as ledger, \
                    ReadModel(readmodel_url(url)) as model:  # fmt: skip
                ceilings[size] = {k: in_process(model, ledger, q, k, args.seconds / 2)
                                  for k in kinds}  # fmt: skip
            for k in kinds:
                print(f"  in-process {k:5s} {ceilings[size][k]:>8,.1f} queries/s "
                      f"({1000 / ceilings[size][k]:.2f} ms each)", flush=True)
        process, base = serve(url)
        try:
            capacity, paced = {}, {}
            for k in kinds:
                rps, lat = asyncio.run(load(base, token, q, k, args.concurrency, args.seconds))
                capacity[k] = rps
                print(f"  HTTP {k:5s} {rps:>8,.1f} requests/s at {args.concurrency} in flight: "
                      f"p50 {statistics.median(lat):.1f} ms, p99 {p99(lat):.1f} ms", flush=True)
                _, lat = asyncio.run(load(base, token, q, k, args.concurrency, args.seconds,
                                          rate=rps / 2))  # fmt: skip
                paced[k] = p99(lat)
                print(f"  HTTP {k:5s} at half capacity ({rps / 2:,.1f}/s): p50 "
                      f"{statistics.median(lat):.1f} ms, p99 {paced[k]:.1f} ms", flush=True)
        finally:
            process.terminate()
            process.wait(timeout=60)
    big, small = ceilings[args.stocks], ceilings[args.small]
    ratio = capacity["stock"] / big["stock"]
    growth = small["cone"] / big["cone"]  # time at big over time at small
    worst = max(paced.values())
    print(f"p99 at half capacity {worst:.1f} ms (target < {P99_TARGET_MS:g}: "
          f"{'ok' if worst < P99_TARGET_MS else 'ABOVE'}); http_ratio {ratio:.3f} (target >= "
          f"{RATIO_TARGET}: {'ok' if ratio >= RATIO_TARGET else 'BELOW'}); growth {growth:.2f} "
          f"(target <= {GROWTH_TARGET:g}: {'ok' if growth <= GROWTH_TARGET else 'ABOVE'})")
    print(f"RESULT stock_rps={capacity['stock']:.1f} list_rps={capacity['list']:.1f} "
          f"cone_rps={capacity['cone']:.1f} p99_ms={worst:.1f} http_ratio={ratio:.3f} "
          f"growth={growth:.2f}")


if __name__ == "__main__":
    main()
