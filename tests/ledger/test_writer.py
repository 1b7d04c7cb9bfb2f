"""The batching writer: everything added is appended, in order, errors surface."""

from __future__ import annotations

import gc
import sys

import pytest

from skyledger.ledger import Ledger, LedgerError
from tests.ledger.writer_process import batch_events


def test_everything_added_is_appended_in_order(ledger: Ledger) -> None:
    events = [e for b in range(7) for e in batch_events(b, 30)]
    with ledger.writer(batch_size=40) as out:
        for event in events:
            out.add(event)
    assert (out.result.appended, out.result.skipped) == (210, 0)
    assert [e.id for e in ledger.read()] == [e.id for e in events]


def test_flush_makes_everything_visible(ledger: Ledger) -> None:
    with ledger.writer(batch_size=1000) as out:
        out.extend(batch_events(0, 10))
        assert ledger.head() == 0  # still in the caller's buffer
        out.flush()
        assert len(list(ledger.read())) == 10


def test_packets_go_with_their_batch(ledger: Ledger) -> None:
    with ledger.writer(batch_size=2) as out:
        out.add(batch_events(0, 1)[0], packet=("ab" * 16, b"bytes"))
    assert ledger.packet("ab" * 16) == b"bytes"


def refuse_inserts(ledger: Ledger) -> None:
    """Install a trigger that makes the database refuse every insert into the events table."""
    table = ledger.recorder.events_table_name
    if ledger.backend == "sqlite":
        sql = [
            f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"
        ]
    else:
        sql = [
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by test trigger'; END $$",
            f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse()",
        ]
    with ledger.recorder.datastore.transaction(commit=True) as curs:  # type: ignore[attr-defined]
        for statement in sql:
            curs.execute(statement)


def test_a_database_error_in_the_background_surfaces_in_the_caller(ledger: Ledger) -> None:
    refuse_inserts(ledger)
    with (
        pytest.raises(LedgerError, match="refused by test trigger"),
        ledger.writer(batch_size=5) as out,
    ):
        out.extend(batch_events(0, 12))
    assert ledger.head() == 0


def test_the_switch_interval_and_gc_threshold_are_restored(ledger: Ledger) -> None:
    before, gc_before = sys.getswitchinterval(), gc.get_threshold()
    with ledger.writer() as out:
        assert sys.getswitchinterval() < before
        assert gc.get_threshold()[0] >= 50_000
        out.extend(batch_events(0, 3))
    assert sys.getswitchinterval() == before
    assert gc.get_threshold() == gc_before


def test_a_batch_size_below_one_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="batch_size"):
        ledger.writer(batch_size=0)


def test_repeats_are_counted_as_skipped_without_a_round_trip(ledger: Ledger) -> None:
    events = batch_events(0, 10)
    with ledger.writer(batch_size=4) as out:
        out.extend(events + events[:6] + events)
    assert (out.result.appended, out.result.skipped) == (10, 16)
    assert len(list(ledger.read())) == 10
