"""The projector driver: batches, positions recorded with output, upstream bounds,
whole-pass projectors, crashes between batches and two drivers on one name."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from skyledger.ledger import (
    AlertReceived,
    ConfigurationRegistered,
    Event,
    Ledger,
    ProjectionError,
    Tracking,
    TrackingConflict,
)
from skyledger.ledger.codec import StoredRow, encode
from skyledger.projections.projector import LedgerView, Projector, catch_up


def alerts(n: int, start: int = 0) -> list[AlertReceived]:
    return [
        AlertReceived(stream=f"S{i % 3}", digest=f"{i:032x}", source="t", locator=f"#{i}")
        for i in range(start, start + n)
    ]


class Echo(Projector):
    """Records, for each alert, a configuration named after its digest (a stand-in tier)."""

    topics = (AlertReceived,)

    def __init__(self, name: str = "echo", batch_size: int = 4, fail_at: int = 0) -> None:
        self.name = name
        self.batch_size = batch_size
        self.fail_at = fail_at
        self.batches: list[int] = []

    def process(self, events: Sequence[Event], bound: int) -> list[StoredRow]:
        self.batches.append(len(events))
        if self.fail_at and len(self.batches) == self.fail_at:
            raise RuntimeError("the projector crashed")
        return [encode(echo(e)) for e in events if isinstance(e, AlertReceived)]


def echo(alert: AlertReceived) -> ConfigurationRegistered:
    return ConfigurationRegistered(
        stream="echo", config_hash=alert.digest, unit="Echo", config={"of": alert.locator}
    )


def echoed(ledger: Ledger) -> list[str]:
    return [e.config_hash for e in ledger.read(types=[ConfigurationRegistered])]  # type: ignore[attr-defined]


def test_a_catch_up_processes_every_event_once_in_batches(ledger: Ledger) -> None:
    ledger.append(alerts(10))
    head = ledger.head()
    projector = Echo(batch_size=4)
    done = catch_up(ledger, projector)
    assert projector.batches == [4, 4, 2]
    assert (done.start, done.end, done.read, done.stored) == (0, head, 10, 10)
    assert ledger.tracked("echo") == head  # its own output lies beyond: not read yet
    assert echoed(ledger) == [a.digest for a in alerts(10)]
    again = catch_up(ledger, projector)  # reads past its output, which is not of its types
    assert (again.read, again.stored, again.end) == (0, 0, ledger.head())
    assert catch_up(ledger, projector).end == ledger.head()  # nothing to do


@pytest.mark.parametrize("batch_size", [1, 3, 100])
def test_the_output_does_not_depend_on_the_batch_size(ledger: Ledger, batch_size: int) -> None:
    ledger.append(alerts(7))
    catch_up(ledger, Echo(batch_size=batch_size))
    ledger.append(alerts(5, start=7))
    catch_up(ledger, Echo(batch_size=batch_size))
    assert echoed(ledger) == [a.digest for a in alerts(12)]


def test_a_projector_never_passes_its_upstream(ledger: Ledger) -> None:
    ledger.append(alerts(6))
    ledger.append([], tracking=Tracking("before", 0, 3))
    projector = Echo(batch_size=100)
    projector.upstream = ("before",)
    assert catch_up(ledger, projector).end == 3
    assert echoed(ledger) == [a.digest for a in alerts(3)]
    ledger.append([], tracking=Tracking("before", 3, ledger.head()))
    catch_up(ledger, projector)
    assert echoed(ledger) == [a.digest for a in alerts(6)]


def test_a_crash_between_batches_loses_and_repeats_nothing(ledger: Ledger) -> None:
    ledger.append(alerts(10))
    with pytest.raises(RuntimeError, match="crashed"):
        catch_up(ledger, Echo(batch_size=4, fail_at=2))
    assert ledger.tracked("echo") == 4  # the first batch, with its output
    assert echoed(ledger) == [a.digest for a in alerts(4)]
    resumed = Echo(batch_size=4)
    catch_up(ledger, resumed)
    assert resumed.batches == [4, 2]  # from where the first batch ended
    assert echoed(ledger) == [a.digest for a in alerts(10)]


def test_a_second_driver_on_one_name_is_refused(ledger: Ledger) -> None:
    ledger.append(alerts(8))

    class Meddled(LedgerView):
        def record(self, output: Sequence[StoredRow], tracking: Tracking) -> int:
            if tracking.after == 0:  # another process records first, from the same start
                self.ledger.append([], tracking=Tracking(tracking.name, 0, 2))
            return super().record(output, tracking)

    with pytest.raises(TrackingConflict, match="expected position 0, found position 2"):
        catch_up(ledger, Echo(batch_size=4), Meddled(ledger))
    assert echoed(ledger) == []  # the refused batch's output went with it


class Summary(Projector):
    """A whole-pass projector: one record per pass, made of everything it saw."""

    topics = (AlertReceived,)
    whole_pass = True
    name = "summary"
    batch_size = 3

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.leak = False

    def process(self, events: Sequence[Event], bound: int) -> list[StoredRow]:
        self.seen += [e.id for e in events]
        return [encode(echo(events[0]))] if self.leak and events else []  # type: ignore[arg-type]

    def finish(self, bound: int) -> list[StoredRow]:
        config = {"alerts": len(self.seen)}
        made = ConfigurationRegistered(stream="pass", config_hash=f"{bound:032x}", unit="S",
                                       config=config)  # fmt: skip
        self.seen = []
        return [encode(made)]


def test_a_whole_pass_projector_records_once_with_its_position(ledger: Ledger) -> None:
    ledger.append(alerts(8))
    head = ledger.head()
    assert catch_up(ledger, Summary()).stored == 1
    assert ledger.tracked("summary") == head
    [made] = ledger.read(types=[ConfigurationRegistered])
    assert made.config == {"alerts": 8}  # type: ignore[attr-defined]
    leaky = Summary()
    leaky.leak = True
    ledger.append(alerts(2, start=8))
    with pytest.raises(ProjectionError, match="records only in finish"):
        catch_up(ledger, leaky)
    assert ledger.tracked("summary") == head
