"""The unit contracts: one small abstract class per tier, one abstract method each.

| tier | contract   | method                                   |
|------|------------|------------------------------------------|
| T0   | Source     | ``packets() -> Iterator[Alert | Unreadable]`` |
| T0   | StreamSource | ``open(start) -> Stream`` (partitioned, endless: Kafka) |
| T0   | Shaper     | ``shape(alert) -> list[Datapoint]``      |
| T0   | Filter     | ``decide(alert) -> Decision``            |
| T1   | Combiner   | ``combine(stock, datapoints, at) -> list[State]`` |
| T2   | T2Unit     | ``process(view) -> dict`` (raise to fail) |
| T3   | Reactor    | ``react(stocks) -> list[Reaction]``, then ``deliver(reaction)`` |

Units are pure: they never touch the store, the bus or the clock. T1 and T2 units must
be deterministic (same inputs, same output). Only ``Reactor.deliver`` has effects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from skyledger.units.alerts import Alert, Blob, Datapoint, Unreadable
from skyledger.units.base import Unit
from skyledger.units.views import Decision, Reaction, State, StockSummary, T2View

__all__ = [
    "Combiner",
    "Filter",
    "Message",
    "Reactor",
    "Shaper",
    "Source",
    "Stream",
    "StreamSource",
    "T2Binding",
    "T2Unit",
]

T2Binding = Literal["stock", "datapoint", "state", "lightcurve"]


class Source(Unit, ABC):
    """T0: yields packets from somewhere (files, a stream), decoded or not.

    Where it is in a source is recorded with each batch it gave (positions count its
    items: blobs, or packets if it yields no blobs), under a name made of its
    :meth:`key`, so an interrupted run resumes where it stopped.
    """

    @abstractmethod
    def packets(self) -> Iterator[Alert | Unreadable]:
        """Yield every packet in a deterministic order; never raise on bad input."""

    def blobs(self, start: int = 0) -> Iterator[Blob | Unreadable] | None:
        """Yield the same packets undecoded, in the same order, from the ``start``-th
        blob on (the runner resumes there), so that they can be decoded in worker
        processes (``units.sources.iter_blob`` decodes a blob); None (the default) if
        this source only yields decoded packets."""
        return None

    def problems(self) -> list[str]:
        """Return what would keep this source from being read at all (a path that does
        not exist, say), each naming the option and the value: a run is refused before
        anything is recorded. By default, nothing."""
        return []

    def key(self) -> str:
        """Return what identifies the packets this source yields, in order: the same key
        means the same items, so a recorded position can be resumed. By default, the
        unit's name and configuration hash."""
        return f"{self.name}:{self.config_hash}"


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a partitioned stream.

    Attributes:
        partition: The partition's name, unique among every stream's (a Kafka topic's
            partition: ``kafka:<cluster id>:<topic>:<partition>``); a position is kept
            per partition.
        offset: The message's offset in its partition (0 for the first).
        blob: Its bytes, undecoded, with a locator naming topic, partition and offset
            (or why they cannot be decoded, said before decoding: a schema the
            registry would not give).
        timestamp_ms: When the stream says it was written (milliseconds since the
            epoch), or None.
    """

    partition: str
    offset: int
    blob: Blob | Unreadable
    timestamp_ms: int | None = None


class Stream(Protocol):
    """A stream a :class:`StreamSource` opened: messages from the partitions assigned to
    this process, each partition from the offset its ``start`` said."""

    errors: list[str]
    """Errors the client met and got over by itself (a broker restarting), latest last."""

    def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        """Return up to ``max_messages`` messages, waiting up to ``timeout_s`` for the
        first; never raise on a message's content."""
        ...

    def at_end(self) -> bool:
        """Return whether every partition assigned to this process has been read to its
        end (or held); a run that stops at the end stops then."""
        ...

    def hold(self, partition: str) -> None:
        """Stop reading ``partition`` for the rest of this stream (its end, for
        :meth:`at_end`): a run that stops at a time holds each partition that got there."""
        ...

    def rewind(self) -> None:
        """Read every assigned partition again from the offset ``start`` gives now."""
        ...

    def stored(self, positions: Mapping[str, int]) -> None:
        """Say that the ledger holds each partition's messages before ``positions[p]``
        (the broker is told, for monitoring tools; the ledger's positions are the truth)."""
        ...

    def close(self) -> None:
        """Leave the stream (a consumer group hands this process's partitions on)."""
        ...


class StreamSource(Source):
    """T0: a partitioned, possibly endless stream (Kafka topics), read from where the
    ledger says.

    The runner keeps a position per partition in the ledger, moved with the events of
    each batch in the same transaction, and :meth:`open` asks it (``start``) where to
    begin each partition assigned to this process, whenever partitions are assigned.
    """

    @abstractmethod
    def open(self, start: Callable[[Sequence[str]], Mapping[str, int]]) -> Stream:
        """Connect and return the stream; ``start(partitions)`` gives the offset to read
        each partition from (a partition it leaves out: the source's own start)."""

    def label(self) -> str:
        """Return what AlertReceived.source records (by default, the unit's name)."""
        return self.name


class Shaper(Unit, ABC):
    """T0: turns one survey's alert into datapoints."""

    survey: ClassVar[str] = ""

    @abstractmethod
    def shape(self, alert: Alert) -> list[Datapoint]:
        """Return the alert's datapoints (detections, upper limits, forced photometry)."""


class Filter(Unit, ABC):
    """T0: decides, per channel, whether the channel follows the alert's stock.

    ``codes`` says in words what each rejection code means (summaries show it beside
    the code); a decision's own ``reason`` says why this alert was rejected.
    """

    codes: ClassVar[Mapping[int, str]] = {}

    @abstractmethod
    def decide(self, alert: Alert) -> Decision:
        """Return ``Decision.accept(group)`` or ``Decision.reject(code, reason)``."""


class Combiner(Unit, ABC):
    """T1: combines a stock's datapoints into states.

    T1 calls it at each alert a channel follows, with the stock's datapoints as the
    ledger knew them then (those of earlier-received alerts and the alert's own) and
    ``at``, the time (JD) the alert's own measurement was taken, or None when it is not
    known (a direct call, an alert without a timed measurement). What a state holds of
    them is the combiner's rule: ``LightCurveCombiner`` keeps nothing observed after
    ``at`` by default.
    """

    @abstractmethod
    def combine(
        self, stock: str, datapoints: Sequence[Datapoint], at: float | None = None
    ) -> list[State]:
        """Return the states to make at an alert observed at ``at`` (JD) from the stock's
        datapoints known then."""


class T2Unit(Unit, ABC):
    """T2: derives a result from a stock, a datapoint, a state or a light curve.

    ``binds`` declares the input shape; ``depends_on`` names T2 units whose results for
    the same subject this unit receives in ``view.dependencies`` (a "tied" unit).
    """

    binds: ClassVar[T2Binding] = "lightcurve"
    depends_on: ClassVar[tuple[str, ...]] = ()
    ranks: ClassVar[tuple[str, ...]] = ()
    """Paths (keys joined by dots) to numbers in its results that stocks are ranked by:
    the read model indexes each stock's latest value of each, per channel, so that a
    channel's stocks ranked by one answer through an index, not a scan."""

    @classmethod
    def subject(cls) -> str:
        """Return what the unit's results are about: ``"stock"``, ``"datapoint"`` or
        ``"state"`` (for ``binds`` state and lightcurve); a dependency must share it."""
        return "state" if cls.binds == "lightcurve" else cls.binds

    @abstractmethod
    def process(self, view: T2View) -> Mapping[str, Any]:
        """Return the result (JSON-compatible); raise to record a failure."""


class Reactor(Unit, ABC):
    """T3: reacts to stocks (reports, webhooks, tags).

    ``scope`` says what ``react`` is given. ``"state"``: each new state of a selected
    stock, one at a time, in log order, so its reactions are a function of the ledger
    alone (a webhook per update). ``"selection"``: once per pass, every selected stock
    updated since the last pass, at its latest state (a report); which stocks a
    reaction names then depends on when the passes ran, as with a scheduled job. A
    selection is handed over as an iterable read once, in stock order, made as it is
    read: a night's selection may be hundreds of thousands of stocks, so keep only what
    the reactions need (a report its top ``limit``).
    """

    scope: ClassVar[Literal["state", "selection"]] = "state"

    @abstractmethod
    def react(self, stocks: Iterable[StockSummary]) -> list[Reaction]:
        """Return the reactions to deliver for these stocks (pure: no effects here)."""

    def deliver(self, reaction: Reaction) -> str:
        """Carry out one reaction and return a short detail; raise if it failed."""
        return "nothing to deliver"
