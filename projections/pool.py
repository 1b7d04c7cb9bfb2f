"""Worker processes for a run: the CPU work of T0 (decoding, shaping, filtering), T1 and T2.

One :class:`Workers` pool serves a whole run (starting one costs about a second). A task
is an object sent pickled (a projector, or T0's packet shaper) and the name of one of its
methods, applied to a chunk; results come back in the order the chunks were given, at
most ``2 * workers`` chunks in flight, so memory stays bounded on endless input. Each
worker unpickles an object once (keyed by its bytes) and, if the object reads the ledger
(it has ``ledger_settings``), gives it the worker's own connection to it.

Workers are forks of a ``forkserver`` (``spawn`` where there is none), never of the
runner's process, which holds database threads. The units a job names must be
importable by name and picklable to go to workers; the error says which.
"""

from __future__ import annotations

import atexit
import multiprocessing
import pickle
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from hashlib import blake2b
from types import TracebackType
from typing import Any, Self, TypeVar

from skyledger.ledger import Ledger, LedgerSettings
from skyledger.ledger.errors import ConfigError

__all__ = ["Portable", "Workers", "each_chunk", "pickled"]

_In = TypeVar("_In")


class Portable:
    """A projector that can be sent to workers: pickled without its ledger and its pool,
    it gets the worker's own ledger (opened from ``ledger_settings``) there."""

    ledger_settings: LedgerSettings | None = None

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        ledger = state.pop("ledger", None)
        if isinstance(ledger, Ledger):
            state["ledger_settings"] = ledger.settings
        state["workers"] = None
        return state


class Workers:
    """A pool of worker processes that run methods of pickled objects over chunks."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context())

    def map(self, spec: bytes, method: str, chunks: Iterable[_In]) -> Iterator[tuple[_In, Any]]:
        """Yield each chunk with ``<object of spec>.<method>(chunk)`` computed in a worker,
        in the order given."""
        pending: deque[tuple[_In, Future[Any]]] = deque()
        for chunk in chunks:
            pending.append((chunk, self._pool.submit(_call, spec, method, chunk)))
            if len(pending) >= 2 * self.workers:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()

    def close(self) -> None:
        """Stop the workers (waiting for none of the chunks still queued)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _context() -> multiprocessing.context.BaseContext:
    """Return the forkserver context where there is one (workers start as forks of a
    clean server process that has imported skyledger once), else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["skyledger.projections.t0", "skyledger.projections.t2"])
    return context


def pickled(what: object, field: str) -> bytes:
    """Return ``what`` pickled for the workers, or raise ConfigError naming ``field``."""
    try:
        return pickle.dumps(what)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        msg = f"{field}: cannot be sent to worker processes ({exc})"
        raise ConfigError(msg) from exc


def each_chunk(
    obj: Any,
    method: str,
    chunks: Sequence[_In],
    workers: Workers | None,
    what: str,
) -> Iterator[tuple[_In, Any]]:
    """Yield each chunk with ``obj.<method>(chunk)``, in order: in worker processes when
    there are workers and more than one chunk, else here. ``what`` names the units for
    the error raised if they cannot be sent to workers."""
    if workers is None or len(chunks) <= 1:
        run: Callable[[_In], Any] = getattr(obj, method)
        for chunk in chunks:
            yield chunk, run(chunk)
        return
    yield from workers.map(pickled(obj, what), method, chunks)


# -- in a worker process -------------------------------------------------------------

_built: dict[bytes, Any] = {}
_ledgers: dict[str, Ledger] = {}


def _ledger(settings: LedgerSettings) -> Ledger:
    opened = _ledgers.get(settings.ledger)
    if opened is None:
        opened = _ledgers[settings.ledger] = Ledger.open(settings)
        atexit.register(opened.close)
    return opened


def _call(spec: bytes, method: str, chunk: Any) -> Any:
    key = blake2b(spec, digest_size=16).digest()
    obj = _built.get(key)
    if obj is None:
        obj = pickle.loads(spec)
        settings = getattr(obj, "ledger_settings", None)
        if isinstance(settings, LedgerSettings):
            obj.ledger = _ledger(settings)
        if len(_built) >= 16:
            _built.clear()
        _built[key] = obj
    return getattr(obj, method)(chunk)
