"""Is a unit deterministic? Run it on generated inputs twice, in another process and on
its inputs in another order, and compare the bytes.

    from skyledger.units.testing import check_determinism

    def test_my_unit_is_deterministic() -> None:
        check_determinism(MyT2Unit({"band": "r"}))            # every survey
        check_determinism(MyZtfFilter(), surveys=["ztf"])

What is compared is what the ledger would record, as canonical JSON bytes: a T2
unit's result (``run_unit``, with the results of the units it depends on computed from
the same datapoints by their registered units), a shaper's datapoints, a filter's
decision, a combiner's states (at an alert observed amid the light curve), a reactor's
reactions. Each generated input (see ``units.testing.strategies``) is run:

* twice, on two instances made from the same configuration (a unit keeping state
  between calls fails);
* in another process, started fresh, with its own hash seed (a unit that iterates over
  a set of strings, or reads the environment, fails). The unit's class must be
  importable by its module and name there;
* on the same inputs in another order, where order must not matter: the datapoints of a
  T2 unit or a combiner, the stocks handed to a reactor.

On a difference, hypothesis looks for the smallest input that still shows it, and the
AssertionError names the check and both outputs, and hypothesis adds that input to it
(a note that pytest prints: "Failing test case", "Falsifying example" in older
versions).
Sources read the world outside and are not checked.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import asdict
from typing import IO, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyledger.ledger.canonical import canonical_bytes
from skyledger.units.alerts import Datapoint
from skyledger.units.base import Unit
from skyledger.units.contracts import Combiner, Filter, Reactor, Shaper, Source, T2Unit
from skyledger.units.photometry import number
from skyledger.units.registry import load_unit
from skyledger.units.testing.strategies import SURVEYS, Sample, Survey, stocks
from skyledger.units.views import StockSummary

__all__ = ["check_determinism", "output_of", "receive", "send"]

_SHOWN = 300


def output_of(unit: Unit, inputs: Sequence[Any]) -> bytes:
    """Return what the ledger would record of a unit's work on ``inputs`` (a stock's
    datapoints, an alert, or stock summaries, by the unit's kind), as canonical bytes."""
    if isinstance(unit, T2Unit):
        from skyledger.units.testing import run_unit  # the kit's own runner (imports this module)

        points: list[Datapoint] = list(inputs)
        deps = {
            name: run_unit(_dependency(name), points) for name in unit.depends_on
        }  # a registered unit by that name fills each dependency
        return canonical_bytes(run_unit(unit, points, deps))
    if isinstance(unit, Shaper):
        return canonical_bytes([asdict(p) for p in unit.shape(inputs[0])])
    if isinstance(unit, Filter):
        return canonical_bytes(asdict(unit.decide(inputs[0])))
    if isinstance(unit, Combiner):
        stock = inputs[0].stock
        times = sorted(t for t in (number(dp.body.get("jd")) for dp in inputs) if t is not None)
        at = times[len(times) // 2] if times else None  # an alert amid the light curve
        states = unit.combine(stock, list(inputs), at)
        return canonical_bytes(
            [[s.stock, list(s.datapoint_ids), s.until, dict(s.set_aside)] for s in states]
        )
    if isinstance(unit, Reactor):
        return canonical_bytes([asdict(r) for r in unit.react(list(inputs))])
    raise TypeError(f"{unit.name}: a {type(unit).__name__} is not a unit kind this checks")


def send(stream: IO[bytes], value: Any) -> None:
    """Write one value, pickled, after its length."""
    data = pickle.dumps(value)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def receive(stream: IO[bytes]) -> Any:
    """Read one value written by :func:`send` (EOFError at the end of the stream)."""
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the other process ended")
    return pickle.loads(stream.read(struct.unpack("<Q", head)[0]))  # our own child process: trusted


def _dependency(name: str) -> T2Unit:
    unit = load_unit(name)()
    if not isinstance(unit, T2Unit):
        raise TypeError(f"dependency {name!r} is not a T2 unit")
    return unit


class _OtherProcess:
    """A fresh Python process (``python -m skyledger.units.testing.child``) that builds a
    unit from its class and configuration and returns its output, input after input."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.pop("PYTHONHASHSEED", None)  # a hash seed of its own
        self.child = subprocess.Popen(
            [sys.executable, "-m", "skyledger.units.testing.child"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )  # fmt: skip

    def output(self, cls: type[Unit], config: dict[str, Any], inputs: Any) -> bytes:
        """Return the unit's output on ``inputs``, computed in the other process."""
        assert self.child.stdin is not None
        assert self.child.stdout is not None
        send(self.child.stdin, (cls.__module__, cls.__qualname__, config, inputs))
        ok, value = receive(self.child.stdout)
        if not ok:
            raise AssertionError(f"in another process, {cls.__name__} failed: {value}")
        found: bytes = value
        return found

    def __enter__(self) -> _OtherProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.child.stdin is not None:
            self.child.stdin.close()  # the child ends at the end of its input
        try:
            self.child.wait(timeout=30)
        finally:
            if self.child.stdout is not None:
                self.child.stdout.close()
            if self.child.poll() is None:
                self.child.kill()
                self.child.wait()


def _inputs(unit: Unit, survey: Survey, max_points: int) -> st.SearchStrategy[list[Any]]:
    """Return the inputs a unit of this kind is given, for one survey."""
    stock = stocks(survey, max_points)
    if isinstance(unit, T2Unit | Combiner):
        return stock.map(lambda s: list(s.datapoints))
    if isinstance(unit, Shaper | Filter):
        return stock.map(lambda s: [s.alerts[-1]])
    return st.lists(stock, min_size=1, max_size=4, unique_by=lambda s: s.stock).map(
        lambda found: [_summary(s) for s in found]
    )


def _summary(sample: Sample) -> StockSummary:
    return StockSummary(stock=sample.stock, channels=("GENERATED",),
                        lightcurve=sample.lightcurve, state=sample.state.id)  # fmt: skip


def _order_free(unit: Unit) -> bool:
    return isinstance(unit, T2Unit | Combiner | Reactor)


def _differs(check: str, unit: Unit, expected: bytes, got: bytes) -> AssertionError:
    return AssertionError(
        f"{unit.name} is not deterministic ({check}): {got[:_SHOWN]!r} where the first run "
        f"gave {expected[:_SHOWN]!r}"
    )


def check_determinism(
    unit: Unit,
    surveys: Iterable[Survey] | None = None,
    max_examples: int = 20,
    max_points: int = 15,
    other_process: bool = True,
    order_matters: bool | None = None,
) -> None:
    """Raise AssertionError if the unit is not deterministic (see the module doc).

    ``surveys``: those whose inputs to generate (a shaper: its own survey; otherwise
    all). ``order_matters``: skip the reordering check (default: only for shapers and
    filters, which take one alert).
    """
    if isinstance(unit, Source):
        raise TypeError(f"{unit.name}: sources read the world outside; they are not checked")
    own: list[Any] = [unit.survey] if isinstance(unit, Shaper) else list(SURVEYS)
    chosen: list[Survey] = list(surveys or own)
    reorder = _order_free(unit) if order_matters is None else not order_matters
    cls, config = type(unit), unit.config.model_dump(mode="json")
    with _OtherProcess() if other_process else nullcontext() as pool:
        for survey in chosen:
            checked = _checker(unit, cls, config, pool, reorder)
            run = settings(
                max_examples=max_examples, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )(given(inputs=_inputs(unit, survey, max_points), data=st.data())(checked))  # fmt: skip
            run()


def _checker(
    unit: Unit, cls: type[Unit], config: dict[str, Any], pool: Any, reorder: bool
) -> Callable[[list[Any], st.DataObject], None]:
    def checked(inputs: list[Any], data: st.DataObject) -> None:
        expected = output_of(unit, inputs)
        again = output_of(cls(config), inputs)
        if again != expected:
            raise _differs("a second instance, same configuration", unit, expected, again)
        if pool is not None:
            other = pool.output(cls, config, inputs)
            if other != expected:
                raise _differs("another process", unit, expected, other)
        if reorder and len(inputs) > 1:
            shuffled = data.draw(st.permutations(inputs), label="the inputs reordered")
            got = output_of(cls(config), shuffled)
            if got != expected:
                raise _differs("the inputs in another order", unit, expected, got)

    return checked
