"""The store, on SQLite and on PostgreSQL: idempotent batched appends, reading by position,
type, stream and id, following the log, the configuration registry and packets."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from skyledger.ledger import (
    AlertReceived,
    ConfigurationRegistered,
    DatapointAdded,
    EventRejected,
    Ledger,
    LedgerError,
    LedgerSettings,
    Tracking,
    TrackingConflict,
)
from tests.ledger.samples import one_of_each
from tests.ledger.writer_process import batch_events

WRITER = Path(__file__).parent / "writer_process.py"


def test_an_empty_ledger_has_head_zero(ledger: Ledger) -> None:
    assert ledger.head() == 0
    assert list(ledger.read()) == []


def test_append_then_read_back_in_order(ledger: Ledger) -> None:
    events = one_of_each()
    result = ledger.append(events)
    assert (result.appended, result.skipped) == (len(events), 0)
    back = list(ledger.read())
    assert [e.id for e in back] == [e.id for e in events]
    assert [e.position for e in back] == sorted(e.position for e in back if e.position)
    assert ledger.head() == back[-1].position
    assert back[3].model_dump() == events[3].model_dump()


def test_the_same_event_twice_in_one_batch_is_stored_once(ledger: Ledger) -> None:
    events = batch_events(0, 10)
    result = ledger.append(events + events[:4])
    assert (result.appended, result.skipped) == (10, 0)
    assert len(list(ledger.read())) == 10


def test_events_already_stored_are_skipped_across_batches(ledger: Ledger) -> None:
    ledger.append(batch_events(0, 10))
    result = ledger.append(batch_events(0, 15))
    assert (result.appended, result.skipped) == (5, 10)
    # The same fact recorded by another run is the same event: skipped too.
    rerun = [e.model_copy(update={"run_id": "another-run"}) for e in batch_events(0, 15)]
    assert ledger.append(rerun).appended == 0
    assert len(list(ledger.read())) == 15


def test_concurrent_writers_in_other_processes_store_each_event_once(ledger_url: str) -> None:
    # Three processes append overlapping ranges of batches at the same time.
    procs = [
        subprocess.Popen(
            [sys.executable, str(WRITER), ledger_url, str(first), "6", "200"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for first in (0, 2, 4)
    ]
    for proc in procs:
        with proc:
            out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
    with Ledger.open(ledger_url) as ledger:
        events = list(ledger.read())
    per_batch = Counter(e.stream for e in events)
    assert per_batch == {f"batch-{b}": 200 for b in range(10)}
    assert len({e.id for e in events}) == len(events) == 2000


def test_read_a_position_range(ledger: Ledger) -> None:
    ledger.append(batch_events(0, 50))
    first, *_ = ledger.read()
    assert first.position is not None
    window = list(ledger.read(start=first.position + 10, stop=first.position + 19))
    assert [e.body["i"] for e in window if isinstance(e, DatapointAdded)] == list(range(10, 20))
    assert list(ledger.read(start=ledger.head() + 1)) == []


def test_read_in_batches_crosses_batch_boundaries(ledger: Ledger) -> None:
    ledger.append(batch_events(0, 120))
    assert len(list(ledger.read(batch_size=7))) == 120


def test_read_by_event_type(ledger: Ledger) -> None:
    ledger.append(one_of_each())
    configs = list(ledger.read(types=[ConfigurationRegistered]))
    assert [type(e) for e in configs] == [ConfigurationRegistered]
    both = list(ledger.read(types=[AlertReceived, DatapointAdded]))
    assert [type(e).__name__ for e in both] == ["AlertReceived", "DatapointAdded"]


def test_read_one_stream_in_order(ledger: Ledger) -> None:
    for b in range(3):  # interleave three streams
        ledger.append(batch_events(b, 5))
        ledger.append(batch_events(10 + b, 5))
    events = list(ledger.stream("batch-1"))
    assert [e.body["i"] for e in events if isinstance(e, DatapointAdded)] == list(range(5))
    positions = [e.position or 0 for e in events]
    assert positions == sorted(positions)
    after = list(ledger.stream("batch-1", after=positions[1]))
    assert len(after) == 3


def test_several_streams_are_read_together_in_the_order_asked(ledger: Ledger) -> None:
    for b in range(3):
        ledger.append(batch_events(b, 4))
        ledger.append(one_of_each())
    asked = ["batch-2", "nothing-here", "batch-0", "batch-1"]
    found = list(ledger.stream_events(asked, types=[DatapointAdded], batch=2))
    assert [stream for stream, _ in found] == asked
    for stream, events in found:
        assert [e.stream for e in events] == [stream] * len(events)
        assert [e.body["i"] for e in events if isinstance(e, DatapointAdded)] == (
            [] if stream == "nothing-here" else list(range(4))
        )
        positions = [e.position or 0 for e in events]
        assert positions == sorted(positions)
    every_type = dict(ledger.stream_events(["batch-1"]))
    assert len(every_type["batch-1"]) == 4


def test_sqlite_reads_several_streams_through_the_stream_index(tmp_path: Path) -> None:
    """Without statistics, SQLite would rather walk the topic index (every event of the
    type) than look up each stream: seconds per query on a ledger of millions."""
    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    with Ledger.open(url) as ledger:
        ledger.append(batch_events(0, 4))
        recorder = ledger.recorder
        asked: list[tuple[str, list[object]]] = []
        select = recorder._select  # type: ignore[attr-defined]

        def spy(where: str, params: list[object]) -> object:
            asked.append((where, params))
            return select(where, params)

        recorder._select = spy  # type: ignore[attr-defined]
        streams = [f"batch-{i}" for i in range(200)]  # a chunk of T1's or T2's stocks
        list(ledger.stream_events(streams, types=[DatapointAdded, AlertReceived]))
    ((where, params),) = asked
    with sqlite3.connect(tmp_path / "ledger.sqlite") as conn:
        sql = f"EXPLAIN QUERY PLAN SELECT rowid FROM skyledger_events {where}"
        plan = " ".join(str(row[-1]) for row in conn.execute(sql, params))
    assert "USING INDEX skyledger_events_stream_idx" in plan, plan


def test_a_postgres_schema_named_in_the_url_is_made_if_missing(pg_url: str) -> None:
    with Ledger.open(f"{pg_url}?schema=survey_b") as ledger:
        ledger.append(batch_events(0, 3))
    with Ledger.open(f"{pg_url}?schema=survey_b") as ledger, Ledger.open(pg_url) as public:
        assert ledger.head() == 3
        assert public.head() == 0  # the default schema's ledger is another one
    with psycopg.connect(pg_url) as conn:
        found = conn.execute("SELECT to_regclass('survey_b.skyledger_events')").fetchone()
    assert found is not None
    assert found[0] is not None


def test_get_by_id(ledger: Ledger) -> None:
    events = one_of_each()
    ledger.append(events)
    got = ledger.get(events[4].id)
    assert got is not None
    assert got.model_dump() == events[4].model_dump()
    assert ledger.get("f" * 32) is None
    assert set(ledger.get_many([e.id for e in events[:3]])) == {e.id for e in events[:3]}


def test_configurations_are_registered_once_by_hash(ledger: Ledger) -> None:
    config = {"bands": ["g", "r"], "min_points": 3}
    h1 = ledger.register_config("T2Features", config)
    h2 = ledger.register_config("T2Features", dict(reversed(list(config.items()))))
    assert h1 == h2
    assert ledger.config(h1) == config
    assert len(list(ledger.read(types=[ConfigurationRegistered]))) == 1
    assert ledger.config("0" * 32) is None


def test_packets_are_kept_once_by_digest(ledger: Ledger) -> None:
    alert = one_of_each()[2]
    assert isinstance(alert, AlertReceived)
    ledger.append([alert], packets=[(alert.digest, b"avro bytes")])
    ledger.append([alert], packets=[(alert.digest, b"avro bytes")])
    assert ledger.packet(alert.digest) == b"avro bytes"
    assert ledger.packet("0" * 32) is None


def test_digest_only_setting_keeps_no_bytes(ledger_url: str) -> None:
    settings = LedgerSettings.load(ledger=ledger_url, packets="digest")
    with Ledger.open(settings) as ledger:
        alert = one_of_each()[2]
        assert isinstance(alert, AlertReceived)
        ledger.append([alert], packets=[(alert.digest, b"avro bytes")])
        assert ledger.packet(alert.digest) is None
        assert ledger.get(alert.id) is not None  # the digest is recorded


def test_follow_yields_new_events_as_they_are_stored(ledger: Ledger) -> None:
    ledger.append(batch_events(0, 3))
    start = ledger.head()
    seen: list[int] = []
    stop = threading.Event()

    def consume() -> None:
        for event in ledger.follow(after=start, wait_s=5.0, stop=stop):
            assert isinstance(event, DatapointAdded)
            seen.append(event.body["batch"])
            if len(seen) == 20:
                stop.set()

    thread = threading.Thread(target=consume)
    thread.start()
    for b in range(1, 5):  # appended while the follower waits
        time.sleep(0.05)
        ledger.append(batch_events(b, 5))
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert seen == [b for b in range(1, 5) for _ in range(5)]  # only new events, in order


def test_follow_wakes_promptly_on_postgres(pg_url: str) -> None:
    # The safety-net timeout is 10 s; LISTEN/NOTIFY must wake the follower long before.
    with Ledger.open(pg_url) as ledger:
        latencies: list[float] = []
        stop = threading.Event()
        appended_at: list[float] = []

        def consume() -> None:
            for _ in ledger.follow(after=0, wait_s=10.0, stop=stop):
                latencies.append(time.monotonic() - appended_at[-1])
                stop.set()

        thread = threading.Thread(target=consume)
        thread.start()
        time.sleep(0.3)
        appended_at.append(time.monotonic())
        ledger.append(batch_events(0, 1))
        thread.join(timeout=15)
        assert latencies
        assert latencies[0] < 2.0


def test_follow_ends_after_the_idle_timeout(ledger: Ledger) -> None:
    ledger.append(batch_events(0, 2))
    started = time.monotonic()
    assert len(list(ledger.follow(after=0, wait_s=0.1, idle_timeout_s=0.3))) == 2
    assert time.monotonic() - started < 5


def test_follow_by_type(ledger: Ledger) -> None:
    ledger.append(one_of_each())
    got = list(ledger.follow(types=[DatapointAdded], wait_s=0.1, idle_timeout_s=0.2))
    assert [type(e) for e in got] == [DatapointAdded]


def test_appending_something_that_is_not_an_event_is_refused(ledger: Ledger) -> None:
    with pytest.raises(EventRejected, match="not an event: dict"):
        ledger.append([{"stream": "x"}])  # type: ignore[list-item]
    assert ledger.head() == 0


def test_reopening_keeps_everything(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as ledger:
        ledger.append(one_of_each())
        head = ledger.head()
    with Ledger.open(ledger_url) as ledger:
        assert ledger.head() == head
        assert len(list(ledger.read())) == len(one_of_each())


def test_a_projector_position_is_recorded_with_its_output(ledger: Ledger) -> None:
    assert ledger.tracked("t1") == 0
    ledger.append(batch_events(0, 3), tracking=Tracking("t1", 0, 40))
    assert ledger.tracked("t1") == 40
    ledger.append([], tracking=Tracking("t1", 40, 55))  # progress without output
    assert ledger.tracked("t1") == 55
    assert ledger.tracked("t2") == 0


@pytest.mark.parametrize(
    ("after", "position", "found"),
    [
        (55, 10, "cannot move from 55 to 10"),  # backwards
        (55, 55, "cannot move from 55 to 55"),  # nowhere
        (40, 70, "expected position 40, found position 55"),  # another process moved it
        (0, 70, "expected position 0, found position 55"),  # a second process from scratch
    ],
)
def test_a_position_moves_only_forward_from_where_it_is(
    ledger: Ledger, after: int, position: int, found: str
) -> None:
    ledger.append([], tracking=Tracking("t1", 0, 55))
    head = ledger.head()
    with pytest.raises(TrackingConflict, match=found):
        ledger.append(batch_events(1, 2), tracking=Tracking("t1", after, position))
    assert ledger.tracked("t1") == 55
    assert ledger.head() == head  # the output went with the refused move


def test_a_position_that_is_not_there_is_not_moved(ledger: Ledger) -> None:
    with pytest.raises(TrackingConflict, match="expected position 30, found no position"):
        ledger.append(batch_events(0, 2), tracking=Tracking("t9", 30, 40))
    assert ledger.tracked("t9") == 0
    assert ledger.head() == 0


def test_two_processes_on_one_name_are_found_out(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as one, Ledger.open(ledger_url) as two:
        start = one.tracked("t1")
        assert two.tracked("t1") == start  # both read the position, then both work
        one.append(batch_events(0, 2), tracking=Tracking("t1", start, 10))
        with pytest.raises(TrackingConflict, match="another process"):
            two.append(batch_events(0, 2), tracking=Tracking("t1", start, 12))


def test_a_failed_append_records_no_position(ledger: Ledger) -> None:
    from tests.ledger.test_writer import refuse_inserts

    refuse_inserts(ledger)
    with pytest.raises(LedgerError, match="refused"):
        ledger.append(batch_events(0, 3), tracking=Tracking("t1", 0, 40))
    assert ledger.tracked("t1") == 0


def test_count_from_a_position(ledger: Ledger) -> None:
    ledger.append(batch_events(0, 5))
    head = ledger.head()
    ledger.append(batch_events(0, 5) + batch_events(1, 3))  # 5 skipped, 3 new
    assert ledger.count() == 8
    assert ledger.count(head + 1) == 3


def test_returned_positions_are_those_of_the_new_events(ledger: Ledger) -> None:
    first = ledger.append(batch_events(0, 4))  # all new: the direct path
    mixed = ledger.append(batch_events(0, 4) + batch_events(1, 3))  # duplicates: fallback
    stored = {e.id: e.position for e in ledger.read()}
    new_ids = [e.id for e in batch_events(0, 4)], [e.id for e in batch_events(1, 3)]
    assert first.positions == tuple(stored[i] for i in new_ids[0])
    assert mixed.positions == tuple(stored[i] for i in new_ids[1])
    assert (mixed.appended, mixed.skipped) == (3, 4)


def test_distinct_streams_between_positions(ledger: Ledger) -> None:
    ledger.append(batch_events(0, 3) + batch_events(1, 2))
    middle = ledger.head()
    ledger.append(batch_events(2, 2) + one_of_each())
    assert ledger.streams(1, middle) == ["batch-0", "batch-1"]
    assert ledger.streams(middle + 1, ledger.head(), types=[DatapointAdded]) == [
        "ZTF21abiuvdk",
        "batch-2",
    ]


def test_a_stream_longer_than_a_read_batch_is_read_whole(ledger: Ledger) -> None:
    ledger.append(batch_events(0, 2500))
    assert len(list(ledger.stream("batch-0"))) == 2500
