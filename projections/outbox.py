"""T3 delivery: the outbox. Reactions a reactor intended are delivered, each at most
once successfully, with the same key however often it is tried.

A projector consuming ReactionIntended events. For each intent of its T3 projector
(``ReactionIntended.intended_by``: one reactor of one job; another job with the same
reactor has an outbox of its own) that has no delivered outcome yet:

1. it claims the next attempt (``DeliveryClaimed`` with the key and attempt number: the
   id is made of both, so of two processes claiming one attempt only one claim is
   stored, and the other, seeing nothing appended, does not deliver);
2. it delivers (``Reactor.deliver``, with the intent's key, target and payload);
3. it records the outcome (``ReactionIssued``: delivered or failed, the attempt, and as
   causation the claim and the intent), and retries failures by the job's policy.

A failed attempt is tried again by the job's policy, after its back-off: the outbox
never sleeps, it puts the intent off (a :class:`~projections.projector.Deferral`, as T2
puts a state off) and its driver comes back when the attempt is due, so a failing
receiver holds up no other work of the process.

A crash between 2 and 3 leaves a claim without an outcome. It is taken over once it is
older than ``Retry.lease_s`` (another live process may still be delivering it: until
then the intent is put off too), and
delivered again under the same key (counted as ``redelivered``): a receiver that honours
idempotency keys sees it once, any receiver may see one key twice, and the ledger holds
one delivered outcome. Delivery is at least once, not exactly once: the key is how a
receiver drops the repeat.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Sequence

from skyledger.ledger import DeliveryClaimed, Event, Ledger, ReactionIntended, ReactionIssued
from skyledger.projections.identity import provenance, tracking_name, unit_identity
from skyledger.projections.projector import Deferral, Projector
from skyledger.projections.retry import Retry
from skyledger.projections.t2 import FAILURES_KEPT
from skyledger.units import Reaction, Reactor

__all__ = ["Deliver"]


class Deliver(Projector):
    """Delivers one reactor's intended reactions (see module doc)."""

    topics = (ReactionIntended,)
    batch_size = 100

    def __init__(
        self,
        ledger: Ledger,
        reactor: Reactor,
        run_id: str,
        retry: Retry | None = None,
        react: str = "",
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.ledger = ledger
        self.reactor = reactor
        self.identity = unit_identity(reactor)
        self.run_id = run_id
        self.retry = retry or Retry()
        self.react = react  # the T3 projector whose intents it delivers
        self.upstream = ()  # intents are complete once seen
        self.clock = clock
        self.name = tracking_name("t3-deliver", self.identity, upstream=[react] if react else [])
        self.counts: Counter[str] = Counter()
        self.appended = 0  # claims and outcomes appended
        self.failures: list[tuple[str | None, str, str]] = []  # (stock, target, last error)
        self._deferral: Deferral | None = None

    def process(self, events: Sequence[Event], bound: int) -> list[object]:
        """Deliver the batch's intents of its reactor projector, in order, up to the first
        that must wait (put off: :meth:`deferral`); outcomes are appended as they come
        (nothing is left for the position's transaction)."""
        self._deferral = None
        for event in events:
            if isinstance(event, ReactionIntended) and self.owns(event):
                wait = self.deliver(event)
                if wait is not None:
                    self._deferral = Deferral(event.position or 0, wait)
                    break
        return []

    def deferral(self) -> Deferral | None:
        """Return the intent the last batch put off: its next attempt is not due yet."""
        return self._deferral

    def owns(self, intent: ReactionIntended) -> bool:
        """Return True for an intent of this outbox's T3 projector and reactor."""
        return intent.intended_by == self.react and intent.provenance.identity() == self.identity

    def deliver(self, intent: ReactionIntended) -> float | None:
        """Deliver one intended reaction unless it was delivered or given up on by this
        run; return how long until its next attempt is due (a back-off after a failed
        attempt, or the rest of another process's lease on its claim), or None when it
        is settled. Everything it goes by is in the ledger: attempts, claims and times."""
        key = intent.idempotency_key
        stream = f"reaction:{key}"
        while True:
            history = list(self.ledger.stream(stream))
            outcomes = {e.attempt: e for e in history if isinstance(e, ReactionIssued)}
            if any(o.outcome == "delivered" for o in outcomes.values()):
                self.counts["delivered before"] += 1
                return None
            claims = [e for e in history if isinstance(e, DeliveryClaimed)]
            mine = sorted(c.attempt for c in claims if c.run_id == self.run_id)
            if mine and mine[-1] in outcomes:  # this run's last attempt failed: back off
                wait = self.retry.wait_after(len(mine))
                if wait is None:
                    return None  # given up (counted when it failed)
                due = outcomes[mine[-1]].time + dt.timedelta(seconds=wait)
                if (left := (due - self.clock()).total_seconds()) > 0:
                    return left
            last = max((c.attempt for c in claims), default=0)
            attempt = max(last, *outcomes, 0) + 1
            open_claim = next((c for c in claims if c.attempt == last), None)
            if last in outcomes:
                open_claim = None
            if open_claim is not None and open_claim.run_id != self.run_id:
                age = (self.clock() - open_claim.time).total_seconds()
                if age < self.retry.lease_s:
                    return self.retry.lease_s - age  # another process may be on it
                self.counts["taken over"] += 1
            claim = DeliveryClaimed(
                stream=stream, idempotency_key=key, attempt=attempt,
                provenance=provenance(self.reactor), causation=(intent.id,), run_id=self.run_id,
                time=self.clock(),
            )  # fmt: skip
            if not self.ledger.append([claim]).appended:
                continue  # another process claimed this attempt: look again
            if open_claim is not None:  # an earlier attempt may have reached the receiver
                self.counts["redelivered"] += 1
            outcome = self._attempt(intent, claim)
            self.appended += 1 + self.ledger.append([outcome]).appended
            if outcome.outcome == "delivered":
                self.counts["delivered"] += 1
                return None
            wait = self.retry.wait_after(len(mine) + 1)
            if wait is None:
                self.counts["failed"] += 1
                if len(self.failures) < FAILURES_KEPT:  # all are ReactionIssued events
                    self.failures.append((intent.stock, intent.target, outcome.detail))
                return None
            return wait

    def _attempt(self, intent: ReactionIntended, claim: DeliveryClaimed) -> ReactionIssued:
        """Deliver once and return the outcome event."""
        reaction = Reaction(
            target=intent.target, key=intent.idempotency_key, payload=intent.payload,
            stock=intent.stock,
        )  # fmt: skip
        started = time.perf_counter()
        try:
            detail, outcome = self.reactor.deliver(reaction), "delivered"
        except Exception as exc:
            detail, outcome = f"{type(exc).__name__}: {exc}", "failed"
        return ReactionIssued(
            stream=claim.stream, idempotency_key=claim.idempotency_key, target=intent.target,
            stock=intent.stock, outcome=outcome, detail=detail, attempt=claim.attempt,
            provenance=provenance(self.reactor, time.perf_counter() - started),
            causation=(claim.id, intent.id), run_id=self.run_id, time=self.clock(),
        )  # fmt: skip
