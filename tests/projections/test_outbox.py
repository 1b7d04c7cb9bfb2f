"""The outbox: each intended reaction is claimed, delivered and its outcome recorded; a
delivered one is never delivered again, failures are retried, a claim left by a dead
process is taken over with the same key, and two processes never share an attempt."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from skyledger.ledger import (
    AppendResult,
    DeliveryClaimed,
    Event,
    Ledger,
    Provenance,
    ReactionIntended,
    ReactionIssued,
)
from skyledger.projections.identity import provenance
from skyledger.projections.outbox import Deliver
from skyledger.projections.projector import catch_up, catch_up_waiting
from skyledger.projections.retry import Retry
from skyledger.units import Reaction, Reactor, StockSummary


class Hook(Reactor):
    """Records what it delivers; fails the first ``fail`` deliveries."""

    version = "1"

    def __init__(self, fail: int = 0) -> None:
        super().__init__()
        self.fail = fail
        self.delivered: list[str] = []

    def react(self, stocks: Iterable[StockSummary]) -> list[Reaction]:
        return []

    def deliver(self, reaction: Reaction) -> str:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("receiver down")
        self.delivered.append(reaction.key)
        return "200"


class Clock:
    """A clock that sleeping moves forward."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)
        self.slept: list[float] = []

    def __call__(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += dt.timedelta(seconds=seconds)


def intend(ledger: Ledger, hook: Hook, key: str = "k1") -> ReactionIntended:
    intent = ReactionIntended(
        stream=f"reaction:{key}", idempotency_key=key, target="http://hook",
        payload={"stock": "A"}, stock="A", intended_by="t3:x", provenance=provenance(hook),
    )  # fmt: skip
    ledger.append([intent])
    return intent


def outbox(ledger: Ledger, hook: Hook, clock: Clock, **retry: Any) -> Deliver:
    policy = Retry(**({"max_attempts": 3, "backoff_s": 1.0, "lease_s": 10.0} | retry))
    return Deliver(ledger, hook, "this-run", policy, "t3:x", clock)


def settle(deliver: Deliver, intent: ReactionIntended, clock: Clock) -> None:
    """Deliver one intent as a driver does: wait out what it puts off, and go on."""
    while (wait := deliver.deliver(intent)) is not None:
        clock.sleep(wait)


def stream(ledger: Ledger, key: str = "k1") -> list[tuple[str, int, str]]:
    found = []
    for e in ledger.stream(f"reaction:{key}"):
        if isinstance(e, DeliveryClaimed):
            found.append(("claim", e.attempt, e.run_id or ""))
        elif isinstance(e, ReactionIssued):
            found.append((e.outcome, e.attempt, e.run_id or ""))
    return found


def test_an_intent_is_claimed_delivered_and_recorded_once(ledger: Ledger) -> None:
    hook, clock = Hook(), Clock()
    intend(ledger, hook)
    deliver = outbox(ledger, hook, clock)
    catch_up(ledger, deliver)
    assert hook.delivered == ["k1"]
    assert stream(ledger) == [("claim", 1, "this-run"), ("delivered", 1, "this-run")]
    [outcome] = [e for e in ledger.stream("reaction:k1") if isinstance(e, ReactionIssued)]
    [claim] = [e for e in ledger.stream("reaction:k1") if isinstance(e, DeliveryClaimed)]
    [intent] = [e for e in ledger.stream("reaction:k1") if isinstance(e, ReactionIntended)]
    assert outcome.causation == (claim.id, intent.id)
    deliver.deliver(intent)  # again, by mistake: nothing happens
    assert hook.delivered == ["k1"]
    assert deliver.counts == {"delivered": 1, "delivered before": 1}


def test_failures_are_retried_with_backoff_then_given_up(ledger: Ledger) -> None:
    hook, clock = Hook(fail=5), Clock()
    intend(ledger, hook)
    deliver = outbox(ledger, hook, clock)
    first = catch_up(ledger, deliver)  # the outbox never sleeps: it puts the intent off
    assert first.deferred_s == 1.0
    assert first.end == first.start  # its position stays before the intent
    assert clock.slept == []
    catch_up_waiting(ledger, deliver, clock.sleep)  # the local run's driver waits it out
    assert hook.delivered == []
    assert [s[:2] for s in stream(ledger)] == [
        ("claim", 1), ("failed", 1), ("claim", 2), ("failed", 2), ("claim", 3), ("failed", 3),
    ]  # fmt: skip
    assert clock.slept == [1.0, 2.0]
    assert deliver.failures == [("A", "http://hook", "ConnectionError: receiver down")]


def test_a_claim_left_without_an_outcome_is_taken_over_after_the_lease(ledger: Ledger) -> None:
    hook, clock = Hook(), Clock()
    intent = intend(ledger, hook)
    ledger.append([DeliveryClaimed(  # a process claimed attempt 1 and died delivering it
        stream=intent.stream, idempotency_key="k1", attempt=1, provenance=provenance(hook),
        run_id="dead-run", time=clock.now - dt.timedelta(seconds=4),
    )])  # fmt: skip
    deliver = outbox(ledger, hook, clock)
    assert deliver.deliver(intent) == 6.0  # the rest of the lease: it might be alive
    settle(deliver, intent, clock)
    assert clock.slept == [6.0]  # it waited for the rest of the lease: it might be alive
    assert hook.delivered == ["k1"]  # the same key, again
    assert stream(ledger) == [
        ("claim", 1, "dead-run"), ("claim", 2, "this-run"), ("delivered", 2, "this-run"),
    ]  # fmt: skip
    assert deliver.counts["taken over"] == 1
    assert deliver.counts["redelivered"] == 1  # the receiver may have had the key already


class Racing:
    """A ledger where another process claims the same attempt just before this one."""

    def __init__(self, ledger: Ledger, hook: Hook, clock: Clock) -> None:
        self._ledger, self._hook, self._clock = ledger, hook, clock
        self.raced = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def append(self, events: Sequence[Event], **kw: Any) -> AppendResult:
        claim = events[0] if events else None
        if isinstance(claim, DeliveryClaimed) and not self.raced:
            self.raced = True
            other = claim.model_copy(update={"run_id": "other-run", "time": self._clock.now})
            self._ledger.append([other])
        return self._ledger.append(events, **kw)


def test_two_processes_never_deliver_the_same_attempt(ledger: Ledger) -> None:
    hook, clock = Hook(), Clock()
    intent = intend(ledger, hook)
    racing = Racing(ledger, hook, clock)
    deliver = outbox(racing, hook, clock)  # type: ignore[arg-type]
    settle(deliver, intent, clock)
    # Its claim of attempt 1 was not stored (the other's was): it did not deliver
    # attempt 1, waited out the other's lease, and delivered attempt 2.
    assert stream(ledger) == [
        ("claim", 1, "other-run"), ("claim", 2, "this-run"), ("delivered", 2, "this-run"),
    ]  # fmt: skip
    assert hook.delivered == ["k1"]
    assert clock.slept == [10.0]


def test_only_its_own_projectors_intents_are_delivered(ledger: Ledger) -> None:
    mine, clock = Hook(), Clock()
    intend(ledger, mine, "k1")
    stranger = ReactionIntended(
        stream="reaction:k2", idempotency_key="k2", target="x", stock=None, intended_by="t3:x",
        provenance=Provenance(unit="Other", unit_version="1", unit_digest="d", config="c"),
    )  # fmt: skip
    # The same reactor in another job (another T3 projector): its outbox, not this one.
    other_job = ReactionIntended(
        stream="reaction:k3", idempotency_key="k3", target="http://hook", stock="B",
        intended_by="t3:other-job", provenance=provenance(mine),
    )  # fmt: skip
    ledger.append([stranger, other_job])
    catch_up(ledger, outbox(ledger, mine, clock))
    assert mine.delivered == ["k1"]
    assert stream(ledger, "k2") == stream(ledger, "k3") == []
