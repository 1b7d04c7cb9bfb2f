"""Limits of a replay: which events they admit (by the alert an event is about), the
names they give projectors, and which projectors they leave alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyledger.ledger import AlertReceived, Event, FilterDecided, ReactionIntended, StateCombined
from skyledger.projections.limits import Limited, Limits
from skyledger.projections.projector import Projector
from skyledger.projections.stocks import alert_position
from tests.ledger.samples import one_of_each

EVENTS = one_of_each()


def first(kind: type[Event]) -> Any:
    return next(e for e in EVENTS if isinstance(e, kind))


class Takes(Projector):
    def __init__(self, *topics: type[Event]) -> None:
        self.topics = topics
        self.name = "t9:abc"
        self.upstream = ("t8:def",)
        self.seen: list[Event] = []

    def process(self, events: Sequence[Event], bound: int) -> list[Any]:
        self.seen += events
        return []


def test_decisions_and_states_are_placed_by_their_alert() -> None:
    decision, state = first(FilterDecided), first(StateCombined)
    assert alert_position(decision) == decision.alert_position == 3
    assert alert_position(state) == 3
    assert alert_position(first(ReactionIntended)) is None


@given(st.integers(1, 10), st.integers(1, 10))
def test_a_range_admits_the_alerts_within_it(since: int, until: int) -> None:
    if since > until:
        with pytest.raises(ValueError, match="the range is empty"):
            Limits(since, until)
        return
    limits = Limits(since, until)
    for event in (first(FilterDecided), first(StateCombined)):
        assert limits.admits(event) == (since <= 3 <= until)
    assert limits.admits(first(ReactionIntended))  # not about one alert: never left out


def test_stocks_are_admitted_by_stream() -> None:
    decision = first(FilterDecided)
    assert Limits(stocks=frozenset({decision.stream})).admits(decision)
    assert not Limits(stocks=frozenset({"ZTF99other"})).admits(decision)


def test_limited_projectors_have_names_of_their_own_and_see_only_their_events() -> None:
    takes = Takes(AlertReceived, FilterDecided)
    assert Limits().apply(takes) is takes  # no limits: the projector itself
    limited = Limits(until=2).apply(takes)
    assert isinstance(limited, Limited)
    assert limited.name == f"t9:abc/{Limits(until=2).tag}"
    assert limited.upstream == (f"t8:def/{Limits(until=2).tag}",)
    assert Limits(until=2).tag != Limits(until=3).tag != Limits(stocks=frozenset("a")).tag
    limited.process([first(FilterDecided)], 10)
    assert takes.seen == []  # its alert is at 3, past the limit
    Limits(until=3).apply(takes).process([first(FilterDecided)], 10)
    assert takes.seen == [first(FilterDecided)]


def test_projectors_of_other_events_are_not_limited() -> None:
    delivery = Takes(ReactionIntended)
    assert Limits(until=2).apply(delivery) is delivery
